//! URL candidates in text and HTML bodies.
//!
//! The finders return raw candidates; the caller canonicalizes them with
//! [`crate::index::normalize::url`], removes repeats and applies the URL
//! limit.
//!
//! - Bare URLs start with `http://`, `https://`, `www.` or a defanged scheme
//!   (`hxxp://`, `hxxps://`, `http[:]//`, `hxxps[://]`). Defanged dots
//!   (`[.]`, `(.)`, `{.}`, `[dot]`, `(dot)`) and colons (`[:]`) are refanged.
//! - A name with a defanged dot and no scheme (`evil[.]example[.]net/x`)
//!   is read as an `http://` URL when it ends in a known public suffix or is
//!   an IP address.
//! - A URL that a mail client wrapped is joined inside angle brackets
//!   (`<http://a.example/very\n  /long>`, as RFC 3986 appendix C allows).
//! - In plain text, joining is more conservative. The line must be at least
//!   [`MIN_WRAPPED_LINE`] characters long. The next line must start with a
//!   token that reads as the rest of a URL: it contains `/`, `?`, `=`, `&`
//!   or `%`, does not start another URL, and is followed by white space.
//! - Text that looks quoted-printable without being declared so (`=3D`
//!   with soft line breaks or in `href=3D`) is scanned after
//!   quoted-printable decoding in place of the text as written, so
//!   `href=3D"..."` and URLs broken by `=` line ends are found whole.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::index::normalize;

/// Candidates longer than this are skipped. Browsers accept longer URLs, but
/// a feed URL of this size is unusual and the cap bounds the work per match.
const MAX_URL_LEN: usize = 8 * 1024;

/// Prefixes that start a bare URL, defanged schemes included.
const BARE_PREFIXES: [&str; 11] = [
    "http://",
    "https://",
    "hxxp://",
    "hxxps://",
    "http[:]//",
    "https[:]//",
    "hxxp[:]//",
    "hxxps[:]//",
    "hxxp[://]",
    "hxxps[://]",
    "www.",
];

/// Defanged dots that mark a name without a scheme as an indicator.
static DEFANGED_DOTS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(["[.]", "(.)", "{.}", "[dot]", "(dot)"])
        .expect("fixed patterns build")
});

/// Shortest line, in characters, after which a URL that reaches the line end
/// may continue on the next line. RFC 3676 limits flowed lines to 78
/// characters and many clients wrap near 72, so a short line was most likely
/// ended by the writer.
const MIN_WRAPPED_LINE: usize = 60;

/// Maximum number of line breaks joined inside one URL.
const MAX_JOINED_LINES: usize = 4;

/// Names of HTML attributes whose values are URLs.
const URL_ATTRIBUTES: [&str; 3] = ["href", "src", "action"];

/// Returns the start and length of the leftmost [`BARE_PREFIXES`] match,
/// in any ASCII case, that starts at or after `from`.
///
/// Every prefix contains exactly one `:` (the schemes) or `.` (`www.`) and
/// no other of the two bytes. So the search jumps from one of those bytes
/// to the next and checks the prefixes written around it. The first byte
/// that completes a prefix gives the leftmost match.
fn find_bare_start(text: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut at = from;
    while let Some(offset) = memchr::memchr2(b':', b'.', bytes.get(at..)?) {
        let anchor = at + offset;
        at = anchor + 1;
        let found = if bytes[anchor] == b'.' {
            anchor
                .checked_sub(3)
                .filter(|&start| start >= from && bytes[start..anchor].eq_ignore_ascii_case(b"www"))
                .map(|start| (start, 4))
        } else if matches!(bytes.get(anchor + 1), Some(b'/' | b']')) {
            scheme_with_colon_at(bytes, anchor, from)
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Returns the start and length of the longest scheme prefix whose `:` is
/// at `colon` and which starts at or after `from`.
fn scheme_with_colon_at(bytes: &[u8], colon: usize, from: usize) -> Option<(usize, usize)> {
    BARE_PREFIXES
        .iter()
        .filter_map(|prefix| {
            let start = colon.checked_sub(prefix.find(':')?)?;
            let written = bytes.get(start..start + prefix.len())?;
            (start >= from && written.eq_ignore_ascii_case(prefix.as_bytes()))
                .then_some((start, prefix.len()))
        })
        .min_by_key(|&(start, len)| (start, usize::MAX - len))
}

/// Returns the ends of the `href`, `src` and `action` names (any ASCII case)
/// that an `=` follows, past white space, in the order they appear.
fn url_attribute_name_ends(html: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    memchr::memchr_iter(b'=', html.as_bytes()).filter_map(move |equals| {
        let before = html.get(..equals)?.trim_end();
        URL_ATTRIBUTES.iter().find_map(|name| {
            let start = before.len().checked_sub(name.len())?;
            let written = before.as_bytes().get(start..)?;
            written
                .eq_ignore_ascii_case(name.as_bytes())
                .then_some((start, before.len()))
        })
    })
}

/// Calls `emit` with every bare URL candidate in `text`, in order, then with
/// every defanged name, until it returns `ControlFlow::Break`. Text that looks
/// quoted-printable is decoded first.
pub(crate) fn find_in_text(text: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) {
    let _ = match undeclared_quoted_printable(text) {
        Some(decoded) => scan_text(&decoded, emit),
        None => scan_text(text, emit),
    };
}

fn scan_text(text: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) -> ControlFlow<()> {
    scan_bare_urls(text, emit)?;
    scan_defanged_names(text, emit)
}

fn scan_bare_urls(text: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) -> ControlFlow<()> {
    let mut position = 0;
    while let Some((start, len)) = find_bare_start(text, position) {
        let is_www = len == 4;
        if is_www && !is_word_start(text, start) {
            position = start + len;
            continue;
        }
        let (end, raw) = match bracketed_url(text, start) {
            Some((end, joined)) => (end, joined),
            None => {
                let end = wrapped_url_end(text, start);
                let raw = text.get(start..end).unwrap_or("").replace(['\r', '\n'], "");
                (end, raw)
            }
        };
        position = end.max(start + 1);
        let Some(candidate) = clean_candidate(&raw) else {
            continue;
        };
        emit(candidate)?;
    }
    ControlFlow::Continue(())
}

/// Reads a URL that starts right after `<` or `<URL:` and ends at `>`, with
/// the white space a mail client inserted when wrapping removed. Returns the
/// end of the URL and the joined text, or `None` when the URL is not in
/// brackets or has no line break.
fn bracketed_url(text: &str, start: usize) -> Option<(usize, String)> {
    let before = text.get(..start)?;
    let opened = before.ends_with('<')
        || before
            .get(before.len().checked_sub(5)?..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case("<URL:"));
    if !opened {
        return None;
    }
    let rest = text.get(start..)?;
    let window = rest.get(..rest.len().min(MAX_URL_LEN))?;
    let close = window.find(['>', '<'])?;
    let inner = window.get(..close)?;
    if !window.get(close..)?.starts_with('>') || !inner.contains('\n') || inner.contains("\n\n") {
        return None;
    }
    let joined: String = inner.split_whitespace().collect();
    Some((start + close, joined))
}

/// Returns the end of the URL that starts at `start`, following it onto the
/// next lines where a mail client wrapped it (see the module documentation).
fn wrapped_url_end(text: &str, start: usize) -> usize {
    let mut end = bare_url_end(text, start);
    for _ in 0..MAX_JOINED_LINES {
        match continued_line_end(text, start, end) {
            Some(next_end) => end = next_end,
            None => break,
        }
    }
    end
}

/// Returns the end of the URL continuation on the line after `end`, when the
/// URL reaches the end of a long line and the next line starts with a token
/// that reads as the rest of a URL.
fn continued_line_end(text: &str, start: usize, end: usize) -> Option<usize> {
    let rest = text.get(end..)?;
    let after_break = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let break_len = rest.len() - after_break.len();
    let line_start = text.get(..end)?.rfind('\n').map_or(0, |p| p + 1);
    let line_chars = text.get(line_start..end)?.chars().count();
    if line_chars < MIN_WRAPPED_LINE {
        return None;
    }
    let token_len = after_break
        .find(|c: char| !is_url_char(c))
        .unwrap_or(after_break.len());
    let token = after_break.get(..token_len)?;
    let next = after_break.get(token_len..).and_then(|t| t.chars().next());
    if token.is_empty() || next.is_some_and(|c| !c.is_whitespace() && c != '<' && c != '>') {
        return None;
    }
    let url = text.get(start..end)?;
    // The token must look like the rest of a URL (a path, a query), never a
    // word or the start of another URL.
    let token_is_url_part = token.contains(['/', '?', '=', '&', '%']);
    let starts_url = find_bare_start(token, 0).is_some_and(|(start, _)| start == 0);
    if !token_is_url_part || starts_url || url.ends_with([')', ']']) {
        return None;
    }
    Some(end + break_len + token_len)
}

/// Characters that may appear in a URL as written (RFC 3986 reserved and
/// unreserved characters and `%`).
fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// Calls `emit` with every name that has a defanged dot and no scheme, such
/// as `evil[.]example[.]net/login`, refanged and prefixed with `http://`.
fn scan_defanged_names(
    text: &str,
    emit: &mut dyn FnMut(String) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut covered = 0;
    for found in DEFANGED_DOTS.find_iter(text) {
        if found.start() < covered {
            continue;
        }
        let is_boundary = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`');
        let token_start = text
            .get(..found.start())
            .and_then(|before| before.rfind(is_boundary).map(|p| p + 1))
            .unwrap_or(0);
        let token_end = text
            .get(found.end()..)
            .and_then(|after| after.find(is_boundary))
            .map_or(text.len(), |p| found.end() + p);
        covered = token_end;
        let Some(token) = text.get(token_start..token_end) else {
            continue;
        };
        let token = token.trim_start_matches(['(', '[', '{', '\'', '*']);
        let lower = token
            .get(..token.len().min(8))
            .unwrap_or("")
            .to_ascii_lowercase();
        let has_scheme =
            token.contains("://") || token.contains("[:]//") || token.contains("[://]");
        if has_scheme || lower.starts_with("www.") {
            // The bare URL scan reads these.
            continue;
        }
        let Some(refanged) = clean_candidate(token) else {
            continue;
        };
        let host = refanged.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        // A name must end in a known public suffix, so `file[.]txt` in a
        // sentence is not read as a host.
        let is_name = normalize::domain(host)
            .ok()
            .and_then(|name| psl::suffix(name.as_bytes()).map(|suffix| suffix.is_known()))
            .unwrap_or(false);
        let is_host = is_name || host.parse::<std::net::IpAddr>().is_ok();
        if !is_host {
            continue;
        }
        emit(format!("http://{refanged}"))?;
    }
    ControlFlow::Continue(())
}

/// Decodes `text` as quoted-printable when it shows the signs of an encoding
/// that was not declared: an `=3D` escape together with a soft line break or
/// an attribute written as `href=3D`. Returns `None` for other text.
fn undeclared_quoted_printable(text: &str) -> Option<String> {
    let has_equals_escape = text.contains("=3D") || text.contains("=3d");
    if !has_equals_escape {
        return None;
    }
    let has_soft_break = text.contains("=\n") || text.contains("=\r\n");
    let lower_attr = |name: &str| {
        text.match_indices("=3").any(|(at, _)| {
            text.get(at.saturating_sub(name.len())..at)
                .is_some_and(|before| before.eq_ignore_ascii_case(name))
        })
    };
    if !has_soft_break && !lower_attr("href") && !lower_attr("src") {
        return None;
    }
    Some(decode_quoted_printable(text))
}

/// Decodes quoted-printable text: soft line breaks removed, `=XX` escapes
/// decoded, other `=` kept, and the bytes read as UTF-8 with invalid
/// sequences replaced.
pub(crate) fn decode_quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(&high), Some(&low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                let pair = [high, low];
                let value = std::str::from_utf8(&pair)
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                out.push(value.unwrap_or(b'='));
                i += if value.is_some() { 3 } else { 1 };
            }
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `emit` with every URL in an `href`, `src` or `action` attribute of
/// `html`,
/// then with every bare URL in its text after HTML entities are resolved.
pub(crate) fn find_in_html(html: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) {
    let _ = match undeclared_quoted_printable(html) {
        Some(decoded) => scan_html(&decoded, emit),
        None => scan_html(html, emit),
    };
}

fn scan_html(html: &str, emit: &mut dyn FnMut(String) -> ControlFlow<()>) -> ControlFlow<()> {
    for (name_start, name_end) in url_attribute_name_ends(html) {
        if !is_attribute_start(html, name_start) {
            continue;
        }
        let Some(value) = attribute_value(html, name_end) else {
            continue;
        };
        let decoded = decode_entities(value);
        let Some(candidate) = attribute_candidate(&decoded) else {
            continue;
        };
        emit(candidate)?;
    }
    let text = decode_entities(html);
    scan_text(&text, emit)
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
/// space, control character, `<`, `>`, a quote, backtick or invisible
/// separator. A quote is legal in a URL but ends it in HTML and CSS text
/// far more often than it is part of it.
fn bare_url_end(text: &str, start: usize) -> usize {
    let rest = text.get(start..).unwrap_or("");
    // ASCII bytes are checked as bytes; the first other byte starts the
    // general loop, which reads whole characters.
    let ascii_end = rest
        .bytes()
        .position(|b| !b.is_ascii() || is_ascii_url_stop(b))
        .unwrap_or(rest.len());
    if rest.as_bytes().get(ascii_end).is_none_or(u8::is_ascii) {
        return start + ascii_end;
    }
    for (offset, c) in rest[ascii_end..].char_indices() {
        let offset = ascii_end + offset;
        let stops = c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '"' | '\'' | '`' | '\u{ad}' | '\u{200b}'
                    ..='\u{200d}' | '\u{2060}' | '\u{feff}'
            );
        if stops {
            return start + offset;
        }
    }
    text.len()
}

/// Tells whether an ASCII byte ends a bare URL in [`bare_url_end`].
fn is_ascii_url_stop(byte: u8) -> bool {
    byte.is_ascii_whitespace()
        || byte.is_ascii_control()
        || matches!(byte, b'<' | b'>' | b'"' | b'\'' | b'`')
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
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    let is_web = BARE_PREFIXES.iter().any(|prefix| lower.starts_with(prefix));
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
    let mut url = normalize::refang(trimmed).into_owned();
    // A scheme alone or `www.` alone is not a URL.
    let body = match url.split_once("://") {
        Some((_, rest)) => rest,
        None if url.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("www.")) => {
            url.get(4..).unwrap_or("")
        }
        None => url.as_str(),
    };
    let no_scheme_no_dot = !url.contains("://") && !url.contains('.');
    if body.is_empty() || body.starts_with(['/', '?', '#', '.']) || no_scheme_no_dot {
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

/// Maps a numeric reference in 0x80..=0x9F to the Windows-1252 character
/// that HTML5 browsers show for it (the HTML Standard's replacement table
/// for numeric character references), so `&#159;` reads as `Ÿ`, not as a
/// control character. Returns `None` outside that range and for the five
/// codes the table leaves unchanged.
fn windows_1252_reference(value: u32) -> Option<char> {
    let mapped = match value {
        0x80 => '\u{20ac}',
        0x82 => '\u{201a}',
        0x83 => '\u{0192}',
        0x84 => '\u{201e}',
        0x85 => '\u{2026}',
        0x86 => '\u{2020}',
        0x87 => '\u{2021}',
        0x88 => '\u{02c6}',
        0x89 => '\u{2030}',
        0x8a => '\u{0160}',
        0x8b => '\u{2039}',
        0x8c => '\u{0152}',
        0x8e => '\u{017d}',
        0x91 => '\u{2018}',
        0x92 => '\u{2019}',
        0x93 => '\u{201c}',
        0x94 => '\u{201d}',
        0x95 => '\u{2022}',
        0x96 => '\u{2013}',
        0x97 => '\u{2014}',
        0x98 => '\u{02dc}',
        0x99 => '\u{2122}',
        0x9a => '\u{0161}',
        0x9b => '\u{203a}',
        0x9c => '\u{0153}',
        0x9e => '\u{017e}',
        0x9f => '\u{0178}',
        _ => return None,
    };
    Some(mapped)
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
        let decoded = windows_1252_reference(value)
            .or_else(|| char::from_u32(value))
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

    /// Runs the match-anywhere search that the prefix and attribute finders
    /// replace, kept as the reference they are checked against.
    fn reference_matches(patterns: &[&str], text: &str) -> Vec<(usize, usize)> {
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns)
            .unwrap();
        automaton
            .find_iter(text)
            .map(|found| (found.start(), found.end()))
            .collect()
    }

    /// Generated texts from pieces that start, end or almost make a prefix
    /// or an attribute, at every offset, from a fixed xorshift.
    fn generated_texts() -> Vec<String> {
        let pieces = [
            "http", "HTTPS", "hxxp", "hXxPs", "://", ":/", "[:]//", "[://]", "[:]", "www", "WwW",
            ".", ":", "/", "]", "href", "SRC", "Action", "=", " ", "\t", "\n", "x", "é", "<a ",
        ];
        let mut state = 0x5851_f42d_4c95_7f2du64;
        let mut texts = Vec::new();
        for _ in 0..4_000 {
            let mut text = String::new();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            texts.push(text);
        }
        texts
    }

    /// Runs the character loop that [`bare_url_end`] runs after its ASCII
    /// part.
    fn reference_url_end(text: &str, start: usize) -> usize {
        text[start..]
            .char_indices()
            .find(|&(_, c)| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        '<' | '>' | '"' | '\'' | '`' | '\u{ad}' | '\u{200b}'
                            ..='\u{200d}' | '\u{2060}' | '\u{feff}'
                    )
            })
            .map_or(text.len(), |(offset, _)| start + offset)
    }

    #[test]
    fn url_end_matches_reference() {
        let extra = [
            "\u{a0}", "\u{85}", "\u{200b}", "\u{ad}", "\x0b", "'", "`", "\"", "ü", "%",
        ];
        for (n, mut text) in generated_texts().into_iter().enumerate() {
            text.push_str(extra[n % extra.len()]);
            text.push_str("tail");
            for start in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                assert_eq!(
                    bare_url_end(&text, start),
                    reference_url_end(&text, start),
                    "{text:?} from {start}"
                );
            }
        }
    }

    #[test]
    fn bare_start_finder_matches_reference() {
        for text in generated_texts() {
            let mut found = Vec::new();
            let mut position = 0;
            while let Some((start, len)) = find_bare_start(&text, position) {
                found.push((start, start + len));
                position = start + len;
            }
            assert_eq!(found, reference_matches(&BARE_PREFIXES, &text), "{text:?}");
        }
    }

    #[test]
    fn attribute_finder_matches_reference() {
        for text in generated_texts() {
            let found: Vec<(usize, usize)> = url_attribute_name_ends(&text).collect();
            let expected: Vec<(usize, usize)> = reference_matches(&URL_ATTRIBUTES, &text)
                .into_iter()
                .filter(|&(_, end)| text[end..].trim_start().starts_with('='))
                .collect();
            assert_eq!(found, expected, "{text:?}");
        }
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
        assert_eq!(
            decode_entities("&#159;&#x9C;&#128;&#129;"),
            "\u{178}\u{153}\u{20ac}\u{81}"
        );
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

#[cfg(test)]
mod disguise_tests {
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
    fn defanged_forms_refanged() {
        let cases = [
            (
                "hxxps[:]//evil[.]example[.]net/a",
                "https://evil.example.net/a",
            ),
            ("HXXP://evil(.)example(.)net/b", "http://evil.example.net/b"),
            (
                "hxxps[://]evil[dot]example[DOT]net/c",
                "https://evil.example.net/c",
            ),
            (
                "http[:]//evil{.}example{.}net/d",
                "http://evil.example.net/d",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(text_urls(input), [expected], "input {input}");
        }
    }

    #[test]
    fn defanged_name_without_scheme() {
        let found = text_urls("block evil[.]example[.]net/login and 192[.]0[.]2[.]9 now");
        assert_eq!(found, ["http://evil.example.net/login", "http://192.0.2.9"]);
    }

    #[test]
    fn defanged_text_not_a_name() {
        assert_eq!(
            text_urls("see note [.] and (dot) here"),
            Vec::<String>::new()
        );
        assert_eq!(text_urls("open report[.]txt now"), Vec::<String>::new());
    }

    #[test]
    fn wrapped_url_in_brackets_joined() {
        let text = "Open <https://evil.example.net/account/verify/\n   session?id=42> today";
        assert_eq!(
            text_urls(text),
            ["https://evil.example.net/account/verify/session?id=42"]
        );
    }

    #[test]
    fn wrapped_long_line_joined() {
        let text = "Please confirm your mailbox within 24 hours at https://evil.example.net/confirm/\nstep2?user=bob to keep it.";
        assert_eq!(
            text_urls(text),
            ["https://evil.example.net/confirm/step2?user=bob"]
        );
    }

    #[test]
    fn short_line_not_joined() {
        let text = "Link: https://a.example.net/x/\nand/or more";
        assert_eq!(text_urls(text), ["https://a.example.net/x/"]);
    }

    #[test]
    fn long_line_sentence_not_joined() {
        let text = "Our new portal is now available for everyone at https://a.example.net\nThanks, the team";
        assert_eq!(text_urls(text), ["https://a.example.net"]);
    }

    #[test]
    fn undeclared_quoted_printable_decoded() {
        let html = "<a href=3D\"https://evil.example.net/lo=\ngin?a=3D1\">x</a>";
        let found = html_urls(html);
        assert_eq!(
            found.last().map(String::as_str),
            Some("https://evil.example.net/login?a=1")
        );
    }

    #[test]
    fn quoted_printable_decoding() {
        assert_eq!(
            decode_quoted_printable("a=3Db=\r\nc=\nd=ZZ=e2=82=ac"),
            "a=bcd=ZZ€"
        );
    }

    #[test]
    fn space_padded_unquoted_href() {
        let found = html_urls("<a href =  https://evil.example.net/p >x</a>");
        assert_eq!(
            found.first().map(String::as_str),
            Some("https://evil.example.net/p")
        );
    }
}
