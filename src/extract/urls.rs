//! URL candidates in text and HTML bodies.
//!
//! The finders return raw candidates; the caller canonicalizes them with
//! [`crate::index::normalize::url`], removes repeats and applies the URL
//! limit. Bare URLs start with `http://`, `https://`, `www.` or the defanged
//! `hxxp://` and `hxxps://`, and defanged dots (`[.]`, `(.)`) are refanged.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Candidates longer than this are skipped. Browsers accept longer URLs, but
/// a feed URL of this size is unusual and the cap bounds the work per match.
const MAX_URL_LEN: usize = 8 * 1024;

/// Starts of bare URLs, matched without regard to ASCII case.
static BARE_STARTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(["http://", "https://", "hxxp://", "hxxps://", "www."])
        .expect("fixed patterns build")
});

/// Names of HTML attributes whose values are URLs.
static URL_ATTRIBUTES: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(["href", "src"])
        .expect("fixed patterns build")
});

/// Calls `emit` with every bare URL candidate in `text`, in order, until it
/// returns `ControlFlow::Break`.
pub(crate) fn find_in_text(text: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) {
    let mut position = 0;
    while let Some(found) = BARE_STARTS.find(text.get(position..).unwrap_or("")) {
        let start = position + found.start();
        let is_www = found.end() - found.start() == 4;
        if is_www && !is_word_start(text, start) {
            position = start + found.end() - found.start();
            continue;
        }
        let end = bare_url_end(text, start);
        position = end.max(start + 1);
        let Some(raw) = text.get(start..end) else {
            continue;
        };
        let Some(candidate) = clean_candidate(raw) else {
            continue;
        };
        if emit(candidate).is_break() {
            return;
        }
    }
}

/// Calls `emit` with every URL in an `href` or `src` attribute of `html`,
/// then with every bare URL in its text after HTML entities are resolved.
pub(crate) fn find_in_html(html: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) {
    for found in URL_ATTRIBUTES.find_iter(html) {
        if !is_attribute_start(html, found.start()) {
            continue;
        }
        let Some(value) = attribute_value(html, found.end()) else {
            continue;
        };
        let decoded = decode_entities(value);
        let Some(candidate) = attribute_candidate(&decoded) else {
            continue;
        };
        if emit(candidate).is_break() {
            return;
        }
    }
    let text = decode_entities(html);
    find_in_text(&text, emit);
}

/// Checks that a `www.` match at `start` begins a word, so `user@www.example.com`
/// and `mywww.example.com` are not read as URLs.
fn is_word_start(text: &str, start: usize) -> bool {
    match text
        .get(..start)
        .and_then(|before| before.chars().next_back())
    {
        None => true,
        Some(c) => !(c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '/' | '%')),
    }
}

/// Checks that an attribute name at `start` follows white space, a quote or a
/// slash, so `data-href` and `xsrc` are not read as `href` and `src`.
fn is_attribute_start(html: &str, start: usize) -> bool {
    match html
        .get(..start)
        .and_then(|before| before.chars().next_back())
    {
        None => false,
        Some(c) => c.is_whitespace() || matches!(c, '"' | '\'' | '/'),
    }
}

/// Returns the end of a bare URL that starts at `start`: the first white
/// space, control character, `<`, `>`, `"`, backtick or invisible separator.
fn bare_url_end(text: &str, start: usize) -> usize {
    let rest = text.get(start..).unwrap_or("");
    for (offset, c) in rest.char_indices() {
        let stops = c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '"' | '`' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}'
            );
        if stops {
            return start + offset;
        }
    }
    text.len()
}

/// Returns the value of the attribute whose name ends at `after_name`, quoted
/// or not, or `None` when no `=` follows.
fn attribute_value(html: &str, after_name: usize) -> Option<&str> {
    let rest = html.get(after_name..)?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    // A quoted value ends at its closing quote. Without one in reach, it ends
    // like an unquoted value, at white space or `>`.
    match rest.as_bytes().first()? {
        &quote @ (b'"' | b'\'') => {
            let inner = rest.get(1..)?;
            prefix_until(inner, false, |b| b == quote)
                .or_else(|| prefix_until(inner, true, |b| b.is_ascii_whitespace() || b == b'>'))
        }
        _ => prefix_until(rest, true, |b| b.is_ascii_whitespace() || b == b'>'),
    }
}

/// Returns the prefix of `text` before the first byte for which `is_end`
/// holds. The search stops after MAX_URL_LEN bytes, so many unterminated
/// values cost linear time, not quadratic. Without an end, the whole text is
/// returned when `to_text_end` is set and it is within MAX_URL_LEN bytes.
fn prefix_until(text: &str, to_text_end: bool, is_end: impl Fn(u8) -> bool) -> Option<&str> {
    let window = &text.as_bytes()[..text.len().min(MAX_URL_LEN)];
    match window.iter().position(|&b| is_end(b)) {
        Some(end) => text.get(..end),
        None if to_text_end && text.len() <= MAX_URL_LEN => Some(text),
        None => None,
    }
}

/// Accepts an attribute value that is an absolute web URL, a
/// protocol-relative URL or a `www.` name.
fn attribute_candidate(value: &str) -> Option<String> {
    let value = value.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    let lower: String = value
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let is_web = ["http://", "https://", "hxxp://", "hxxps://", "www."]
        .iter()
        .any(|prefix| lower.starts_with(prefix));
    if is_web {
        return clean_candidate(value);
    }
    if value.starts_with("//") {
        return clean_candidate(&format!("http:{value}"));
    }
    None
}

/// Trims trailing punctuation, refangs the scheme and dots and applies the
/// length cap.
fn clean_candidate(raw: &str) -> Option<String> {
    // Checked before trimming too, because trimming counts brackets.
    if raw.len() > 2 * MAX_URL_LEN {
        return None;
    }
    let trimmed = trim_trailing_punctuation(raw);
    if trimmed.len() > MAX_URL_LEN {
        return None;
    }
    let mut url = refang(trimmed);
    // A scheme alone or `www.` alone is not a URL.
    let body = match url.split_once("://") {
        Some((_, rest)) => rest,
        None => url.get(4..).unwrap_or(""),
    };
    if body.is_empty() || body.starts_with(['/', '?', '#', '.']) {
        return None;
    }
    url.shrink_to_fit();
    Some(url)
}

/// Removes sentence punctuation after a URL. A closing bracket stays when the
/// URL contains its opening bracket, as in wiki links like `/Foo_(bar)`.
fn trim_trailing_punctuation(raw: &str) -> &str {
    let mut text = raw;
    loop {
        let Some(last) = text.chars().next_back() else {
            return text;
        };
        let trim = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '>' | '*' | '…' => true,
            ')' => text.matches('(').count() < text.matches(')').count(),
            ']' => text.matches('[').count() < text.matches(']').count(),
            '}' => text.matches('{').count() < text.matches('}').count(),
            _ => false,
        };
        if !trim {
            return text;
        }
        text = &text[..text.len() - last.len_utf8()];
    }
}

fn refang(candidate: &str) -> String {
    let mut url = if candidate.len() >= 4
        && candidate
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("hxxp"))
    {
        format!("http{}", candidate.get(4..).unwrap_or(""))
    } else {
        candidate.to_string()
    };
    if url.contains("[.]") || url.contains("(.)") {
        url = url.replace("[.]", ".").replace("(.)", ".");
    }
    url
}

/// Resolves HTML character references: numeric ones (`&#46;`, `&#x2e;`, the
/// semicolon optional) and the named ones that occur in URLs. Unknown names
/// stay as written, and invalid code points become U+FFFD.
pub(crate) fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_reference(after) {
            Some((decoded, consumed)) => {
                out.push(decoded);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the reference after a `&` and returns the character and the
/// number of bytes it used.
fn decode_reference(after: &str) -> Option<(char, usize)> {
    if let Some(numeric) = after.strip_prefix('#') {
        let (digits, radix, prefix) = match numeric.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (numeric, 10, 1),
        };
        let len = digits
            .bytes()
            .take_while(|b| {
                if radix == 16 {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if len == 0 {
            return None;
        }
        let value = u32::from_str_radix(digits.get(..len)?, radix).unwrap_or(u32::MAX);
        let decoded = char::from_u32(value)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{fffd}');
        let semicolon = usize::from(digits.as_bytes().get(len) == Some(&b';'));
        return Some((decoded, prefix + len + semicolon));
    }
    let name_len = after
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if after.as_bytes().get(name_len) != Some(&b';') {
        return None;
    }
    let decoded = match after.get(..name_len)? {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "sol" => '/',
        "colon" => ':',
        "period" => '.',
        "quest" => '?',
        "equals" => '=',
        "num" => '#',
        "percnt" => '%',
        "commat" => '@',
        "plus" => '+',
        "comma" => ',',
        "semi" => ';',
        "lpar" => '(',
        "rpar" => ')',
        "lowbar" => '_',
        "hyphen" | "dash" => '-',
        "Tab" => '\t',
        "NewLine" => '\n',
        _ => return None,
    };
    Some((decoded, name_len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_urls(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        find_in_text(text, &mut |url| {
            found.push(url);
            ControlFlow::Continue(())
        });
        found
    }

    fn html_urls(html: &str) -> Vec<String> {
        let mut found = Vec::new();
        find_in_html(html, &mut |url| {
            found.push(url);
            ControlFlow::Continue(())
        });
        found
    }

    #[test]
    fn text_trailing_punctuation() {
        let found = text_urls("See http://a.example.com/x. Or (https://b.example.org/y), ok?");
        assert_eq!(found, ["http://a.example.com/x", "https://b.example.org/y"]);
    }

    #[test]
    fn text_balanced_parenthesis_kept() {
        let found = text_urls("wiki http://w.example.org/Foo_(bar) end");
        assert_eq!(found, ["http://w.example.org/Foo_(bar)"]);
    }

    #[test]
    fn text_www_needs_word_start() {
        let found = text_urls("mail user@www.example.com or visit WWW.Example.net/a!");
        assert_eq!(found, ["WWW.Example.net/a"]);
    }

    #[test]
    fn text_scheme_alone_skipped() {
        assert_eq!(
            text_urls("http:// and www. and https:///x"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn text_defanged_refanged() {
        let found = text_urls("bad: hxxps://evil[.]example[.]net/p");
        assert_eq!(found, ["https://evil.example.net/p"]);
    }

    #[test]
    fn text_http_www_once() {
        assert_eq!(
            text_urls("http://www.example.com/"),
            ["http://www.example.com/"]
        );
    }

    #[test]
    fn html_attribute_forms() {
        let html = r##"<a href="http://a.example.com/1">x</a><img SRC='https://b.example.com/2'>
            <a href=http://c.example.com/3>y</a><a data-href="http://d.example.com/4">
            <a href = "//e.example.com/5"><a href="mailto:x@example.com"><a href="#top">"##;
        let found = html_urls(html);
        assert_eq!(
            found,
            [
                "http://a.example.com/1",
                "https://b.example.com/2",
                "http://c.example.com/3",
                "http://e.example.com/5",
                "http://a.example.com/1",
                "https://b.example.com/2",
                "http://c.example.com/3",
                "http://d.example.com/4",
            ]
        );
    }

    #[test]
    fn html_entities_in_href() {
        let found = html_urls(r#"<a href="http://a&#46;example&#x2e;com/?a=1&amp;b=2">"#);
        assert_eq!(
            found.first().map(String::as_str),
            Some("http://a.example.com/?a=1&b=2")
        );
    }

    #[test]
    fn entities_decode() {
        assert_eq!(
            decode_entities("a&amp;b&#46;c&#x2E;d&#47e&bogus;f&"),
            "a&b.c.d/e&bogus;f&"
        );
        assert_eq!(decode_entities("&#0;&#x110000;"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn html_unterminated_value_bounded() {
        let html = format!(
            "<a href=\"http://a.example.com/{}",
            "x".repeat(3 * MAX_URL_LEN)
        );
        assert_eq!(html_urls(&html), Vec::<String>::new());
        let html = "<a href=\"http://b.example.com/x <b>".to_string();
        assert_eq!(
            html_urls(&html),
            ["http://b.example.com/x", "http://b.example.com/x"]
        );
    }

    #[test]
    fn trims_nested_punctuation() {
        assert_eq!(
            trim_trailing_punctuation("http://x.example/a).\"'"),
            "http://x.example/a"
        );
    }
}
