//! Shortens the body of an HTTP error response to a one-line reason, so an
//! error message or log line shows why a server rejected a request without
//! the server's whole error page.

use serde_json::Value;

/// The maximum length of a reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The part of a body that is searched for a reason, in bytes, so a huge
/// error page costs no more than a small one.
const MAX_SCANNED_BYTES: usize = 64 * 1024;

/// Members of a JSON error object that carry its reason, tried in this
/// order. TAXII 2.1 error messages have `title` and `description`, the OTX
/// and other REST APIs `detail`, `message` or `error`.
const JSON_REASON_KEYS: [&str; 4] = ["title", "detail", "message", "error"];

/// Returns a one-line reason from the body of an error response. It is the
/// `<title>` of an HTML page, or the `title` (and `description`), `detail`,
/// `message` or `error` member of a JSON object. Otherwise it is the first
/// line of the text with markup stripped. The reason has no control
/// characters, runs of white space become one space, and it is cut to
/// [`MAX_REASON_CHARS`] with `...` appended. Only the first
/// [`MAX_SCANNED_BYTES`] of the body are read. An empty or blank body
/// returns an empty string.
pub fn reason(body: &[u8], content_type: Option<&str>) -> String {
    let scanned = body.get(..MAX_SCANNED_BYTES).unwrap_or(body);
    let text = String::from_utf8_lossy(scanned);
    let text = text.trim();
    let content_type = content_type.unwrap_or_default().to_ascii_lowercase();

    let found = if content_type.contains("json") || text.starts_with('{') {
        json_reason(text)
    } else {
        None
    };
    let found = found.or_else(|| {
        let is_markup =
            content_type.contains("html") || content_type.contains("xml") || text.starts_with('<');
        if is_markup {
            html_title(text).or_else(|| first_line(&strip_markup(text)))
        } else {
            first_line(text)
        }
    });
    shorten(&found.unwrap_or_default())
}

/// Returns the reason of a JSON error object, if `text` is one.
fn json_reason(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let object = value.as_object()?;
    let member = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|text| !text.is_empty())
    };
    let reason = JSON_REASON_KEYS.iter().find_map(|key| member(key))?;
    match member("description") {
        Some(description) if member("title") == Some(reason) => {
            Some(format!("{reason}: {description}"))
        }
        _ => Some(reason.to_string()),
    }
}

/// Returns the text of the `<title>` element of an HTML page, if it has a
/// non-empty one.
fn html_title(text: &str) -> Option<String> {
    let text = remove_comments(text);
    // ASCII lowercasing keeps every byte offset, so offsets found in the
    // lowercase copy are valid in `text`.
    let lower = text.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let content_start = open + lower.get(open..)?.find('>')? + 1;
    let content_end = content_start + lower.get(content_start..)?.find("</title")?;
    let title = strip_markup(text.get(content_start..content_end)?);
    let title = title.trim();
    (!title.is_empty()).then(|| title.to_string())
}

/// Removes `<!-- -->` comments. An unclosed comment runs to the end.
fn remove_comments(text: &str) -> String {
    let mut without_comments = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        without_comments.push_str(&rest[..start]);
        let comment = &rest[start + 4..];
        rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
    }
    without_comments.push_str(rest);
    without_comments
}

/// Elements whose content is no reason: the head (its title is read
/// separately), scripts and style sheets.
const SKIPPED_ELEMENTS: [&str; 3] = ["head", "script", "style"];

/// Elements that start a new line of text.
const BLOCK_ELEMENTS: [&str; 17] = [
    "br", "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "tr", "hr", "pre", "table",
    "center", "body", "title",
];

/// Elements inside a line of text, removed without a separator.
const INLINE_ELEMENTS: [&str; 10] = [
    "a", "b", "i", "u", "em", "strong", "span", "code", "small", "font",
];

/// Strips tags, comments, and the `head`, `script` and `style` elements
/// from HTML or XML, and decodes the common character references. A block
/// element such as `<p>` starts a new line, an inline one such as `<b>`
/// leaves no trace, and any other tag becomes a space.
fn strip_markup(text: &str) -> String {
    let mut stripped = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        stripped.push_str(&decode_references(&rest[..open]));
        let tag_and_rest = &rest[open..];
        if let Some(comment) = tag_and_rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(close) = tag_and_rest.find('>') else {
            // An unclosed tag ends the text.
            return stripped;
        };
        let tag = &tag_and_rest[1..close];
        rest = &tag_and_rest[close + 1..];
        let is_end_tag = tag.starts_with('/');
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !is_end_tag && SKIPPED_ELEMENTS.contains(&name.as_str()) {
            // Each search starts where the last one ended, so stripping
            // stays linear in the length of the text.
            let end_tag = format!("</{name}");
            rest = find_ignoring_case(rest, &end_tag).map_or("", |end| &rest[end..]);
            continue;
        }
        if BLOCK_ELEMENTS.contains(&name.as_str()) {
            stripped.push('\n');
        } else if !INLINE_ELEMENTS.contains(&name.as_str()) {
            stripped.push(' ');
        }
    }
    stripped.push_str(&decode_references(rest));
    stripped
}

/// Returns the byte offset of the first ASCII-case-insensitive match of
/// `needle` in `haystack`.
fn find_ignoring_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Decodes numeric character references and the named ones that error
/// pages use. Other named references stay as they are.
fn decode_references(text: &str) -> String {
    let mut decoded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        decoded.push_str(&rest[..start]);
        let reference = &rest[start..];
        let end = reference
            .char_indices()
            .take(12)
            .find(|(_, c)| *c == ';')
            .map(|(index, _)| index);
        let Some(character) = end.and_then(|end| reference_char(&reference[1..end])) else {
            decoded.push('&');
            rest = &reference[1..];
            continue;
        };
        decoded.push(character);
        rest = &reference[end.unwrap_or(0) + 1..];
    }
    decoded.push_str(rest);
    decoded
}

/// Returns the character of a reference given without `&` and `;`.
fn reference_char(name: &str) -> Option<char> {
    let numeric = name.strip_prefix('#');
    if let Some(hex) = numeric.and_then(|n| n.strip_prefix('x').or_else(|| n.strip_prefix('X'))) {
        return u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
    }
    if let Some(decimal) = numeric {
        return decimal.parse().ok().and_then(char::from_u32);
    }
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => None,
    }
}

/// Returns the first line of `text` that is not blank.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
}

/// Replaces control characters with spaces, joins runs of white space, and
/// cuts the result to [`MAX_REASON_CHARS`].
fn shorten(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let joined = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= MAX_REASON_CHARS {
        return joined;
    }
    let mut cut: String = joined.chars().take(MAX_REASON_CHARS).collect();
    cut.truncate(cut.trim_end().len());
    cut.push_str("...");
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const PYTHON_404: &str = "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        <p>Error code: 404</p>\n        <p>Message: File not found.</p>\n    </body>\n</html>\n";

    #[test]
    fn html_title_taken() {
        assert_eq!(
            reason(PYTHON_404.as_bytes(), Some("text/html;charset=utf-8")),
            "Error response"
        );
    }

    #[test]
    fn html_title_entities_decoded() {
        let page = "<html><head><TITLE>\n  502 Bad &amp; Broken\n</TITLE></head></html>";
        assert_eq!(reason(page.as_bytes(), None), "502 Bad & Broken");
    }

    #[test]
    fn html_without_title_first_text_line() {
        let page = "<html><head><style>body { color: red }</style></head>\n<body><h1>Access denied</h1>\n<p>Your key is unknown.</p></body></html>";
        assert_eq!(reason(page.as_bytes(), Some("text/html")), "Access denied");
    }

    #[test]
    fn html_blocks_split_lines() {
        let page = "<html><body><h1>Forbidden</h1><p>You <b>lack</b> access.</p></body></html>";
        assert_eq!(reason(page.as_bytes(), Some("text/html")), "Forbidden");
        assert_eq!(strip_markup(page).trim(), "Forbidden\n\nYou lack access.");
    }

    #[test]
    fn comments_and_scripts_skipped() {
        let page = "<html><!-- <title>old</title> --><script>var a = '<p>';</script>\n<SCRIPT>x</SCRIPT><p>Quota &#x26; rate &lt;exceeded&gt; &copy;</p></html>";
        assert_eq!(
            reason(page.as_bytes(), None),
            "Quota & rate <exceeded> &copy;"
        );
    }

    #[test]
    fn unclosed_tag_ends_text() {
        assert_eq!(reason(b"<p>Gateway timeout<br", None), "Gateway timeout");
    }

    #[test]
    fn large_body_scanned_in_part() {
        let mut body = "<p>".repeat(MAX_SCANNED_BYTES);
        body.push_str("<title>late</title>");
        assert_eq!(reason(body.as_bytes(), Some("text/html")), "");
    }

    #[test]
    fn xml_text_stripped() {
        let body = "<?xml version=\"1.0\"?>\n<error><code>42</code> <text>collection closed</text></error>";
        assert_eq!(
            reason(body.as_bytes(), Some("application/xml")),
            "42 collection closed"
        );
    }

    #[test]
    fn taxii21_error_object() {
        let body = r#"{"title": "Unauthorized", "description": "The API key is invalid.", "http_status": "401"}"#;
        assert_eq!(
            reason(body.as_bytes(), Some("application/taxii+json;version=2.1")),
            "Unauthorized: The API key is invalid."
        );
    }

    #[test]
    fn json_detail_member() {
        let body = r#"{"detail": "Authentication credentials were not provided."}"#;
        assert_eq!(
            reason(body.as_bytes(), Some("application/json")),
            "Authentication credentials were not provided."
        );
    }

    #[test]
    fn json_without_reason_first_line() {
        let body = "{\"status\": 500}";
        assert_eq!(reason(body.as_bytes(), None), "{\"status\": 500}");
    }

    #[test]
    fn plain_text_first_line() {
        let body = "\n\nbackend is down\nretry in 5 minutes\n";
        assert_eq!(
            reason(body.as_bytes(), Some("text/plain")),
            "backend is down"
        );
    }

    #[test]
    fn plain_text_keeps_angle_brackets() {
        assert_eq!(
            reason(b"limit is < 5 requests > per second", None),
            "limit is < 5 requests > per second"
        );
    }

    #[test]
    fn control_characters_replaced() {
        assert_eq!(
            reason(b"bad\x1b[31m\tgateway", Some("text/plain")),
            "bad [31m gateway"
        );
    }

    #[test]
    fn long_reason_cut() {
        let body = "x".repeat(500);
        let expected = format!("{}...", "x".repeat(MAX_REASON_CHARS));
        assert_eq!(reason(body.as_bytes(), None), expected);
    }

    #[test]
    fn empty_body_empty_reason() {
        assert_eq!(reason(b"", Some("text/html")), "");
        assert_eq!(reason(b" \r\n ", None), "");
    }
}
