//! Link targets of PDF attachments.
//!
//! Many phishing messages carry no link in their text: the link sits in an
//! attached PDF, as an annotation whose action opens a URL
//! (`<< /S /URI /URI (https://...) >>`). The scanner reads the string after
//! each `/URI` key, both in the file as written and inside the object
//! streams (`/Type /ObjStm`, Flate-compressed) where PDF 1.5 and later keep
//! most objects. A string is a literal `( ... )` string, with its escapes
//! and nested parentheses, or a hexadecimal `< ... >` string.
//!
//! Not read: the text drawn on the pages, encrypted files (their strings
//! are ciphertext), streams with filters other than `/FlateDecode`, and
//! relative links resolved against a `/Base`.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use miniz_oxide::inflate::decompress_to_vec_zlib_with_limit;

/// Link strings longer than this are skipped, as in the text scanner.
const MAX_URI_LEN: usize = 8 * 1024;

/// Maximum bytes of a literal string that are read. An escape takes up to
/// four bytes for one byte of the string.
const MAX_LITERAL_SCAN: usize = 4 * MAX_URI_LEN;

/// How far around an `/ObjStm` name its dictionary is looked for.
const DICTIONARY_WINDOW: usize = 2048;

/// Maximum object streams read per PDF. The cap bounds the dictionary
/// searches in a file that repeats the `/ObjStm` name.
const MAX_OBJECT_STREAMS: usize = 256;

/// The two names the scanner stops at.
static KEYS: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::new(["/URI", "/ObjStm"]).expect("fixed patterns build"));

/// Bounds of the decompression of one PDF. Each limit that is hit is passed
/// to `hit` by its `Limits` field name.
pub(crate) struct Budget<'h> {
    /// Maximum bytes decompressed from one object stream.
    pub max_stream_bytes: usize,
    /// Decompressed bytes left for the whole message.
    pub bytes_left: usize,
    pub hit: &'h mut dyn FnMut(&'static str),
}

/// Checks for the PDF header, which readers accept within the first 1024
/// bytes of a file.
pub(crate) fn is_pdf(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    head.windows(5).any(|window| window == b"%PDF-")
}

/// Passes each link target of the PDF `bytes` to `emit`, in file order,
/// the targets in object streams after those written plainly. Stops when
/// `emit` breaks. A target may be passed twice (a compressor may leave
/// text as written), so the caller removes repeats.
pub(crate) fn link_targets(
    bytes: &[u8],
    budget: &mut Budget<'_>,
    emit: &mut dyn FnMut(String) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut streams = Vec::new();
    for found in KEYS.find_iter(bytes) {
        if found.pattern().as_usize() == 0 {
            if let Some(target) = string_after(bytes, found.end()) {
                emit(target)?;
            }
        } else {
            streams.push(found.start());
        }
    }
    // Streams do not overlap, so a name inside the data of the previous
    // stream is skipped and every byte is searched for `endstream` once.
    let mut previous_end = 0;
    for at in streams.into_iter().take(MAX_OBJECT_STREAMS) {
        if at < previous_end {
            continue;
        }
        let Some((data, end)) = flate_stream_after(bytes, at) else {
            continue;
        };
        previous_end = end;
        let Some(inflated) = inflate(data, budget) else {
            continue;
        };
        for found in KEYS.find_iter(&inflated) {
            if found.pattern().as_usize() == 0 {
                if let Some(target) = string_after(&inflated, found.end()) {
                    emit(target)?;
                }
            }
        }
    }
    ControlFlow::Continue(())
}

/// Decompresses one object stream within `budget`. A stream cut short or
/// damaged gives what could be decompressed, as PDF readers do.
fn inflate(data: &[u8], budget: &mut Budget<'_>) -> Option<Vec<u8>> {
    if budget.bytes_left == 0 {
        (budget.hit)("max_archive_bytes");
        return None;
    }
    let limit = budget.max_stream_bytes.min(budget.bytes_left);
    let out = match decompress_to_vec_zlib_with_limit(data, limit) {
        Ok(out) => out,
        Err(error) => {
            if error.output.len() >= limit {
                (budget.hit)(if limit == budget.max_stream_bytes {
                    "max_archive_member_bytes"
                } else {
                    "max_archive_bytes"
                });
            }
            error.output
        }
    };
    budget.bytes_left -= out.len();
    Some(out)
}

/// Returns the data of the Flate-compressed stream whose dictionary contains
/// the `/ObjStm` name at `at`, and the offset where the data ends. Returns
/// `None` when the dictionary names another filter or no stream follows.
fn flate_stream_after(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let window_start = at.saturating_sub(DICTIONARY_WINDOW);
    let dictionary_start =
        find_last(&bytes[window_start..at], b"obj").map_or(window_start, |p| window_start + p);
    let window_end = bytes.len().min(at + DICTIONARY_WINDOW);
    let keyword = at + find(&bytes[at..window_end], b"stream")?;
    let dictionary = &bytes[dictionary_start..keyword];
    if find(dictionary, b"/FlateDecode").is_none()
        || ["/ASCII85Decode", "/ASCIIHexDecode", "/LZWDecode", "/Crypt"]
            .iter()
            .any(|filter| find(dictionary, filter.as_bytes()).is_some())
    {
        return None;
    }
    let mut start = keyword + b"stream".len();
    if bytes.get(start) == Some(&b'\r') {
        start += 1;
    }
    if bytes.get(start) == Some(&b'\n') {
        start += 1;
    }
    let rest = bytes.get(start..)?;
    let end = find(rest, b"endstream").unwrap_or(rest.len());
    Some((&rest[..end], start + end))
}

/// Reads the string that follows a `/URI` key ending at `at`. Returns
/// `None` for the `/URI` action type name and for anything that is not a
/// string.
fn string_after(bytes: &[u8], at: usize) -> Option<String> {
    let mut position = at;
    while bytes.get(position).is_some_and(|b| is_white(*b)) {
        position += 1;
    }
    let raw = match bytes.get(position)? {
        b'(' => literal_string(bytes.get(position + 1..)?)?,
        b'<' if bytes.get(position + 1) != Some(&b'<') => hex_string(bytes.get(position + 1..)?)?,
        _ => return None,
    };
    let text = String::from_utf8_lossy(&raw);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Decodes a literal string whose opening parenthesis was just read.
fn literal_string(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut depth = 1usize;
    let mut position = 0;
    while position < MAX_LITERAL_SCAN {
        let byte = *bytes.get(position)?;
        position += 1;
        match byte {
            b'(' => {
                depth += 1;
                out.push(byte);
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (out.len() <= MAX_URI_LEN).then_some(out);
                }
                out.push(byte);
            }
            b'\\' => {
                let next = *bytes.get(position)?;
                position += 1;
                match next {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'0'..=b'7' => {
                        let mut value = u32::from(next - b'0');
                        for _ in 0..2 {
                            match bytes.get(position) {
                                Some(digit @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(digit - b'0');
                                    position += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((value & 0xff) as u8);
                    }
                    // A backslash at a line end continues the string.
                    b'\r' => {
                        if bytes.get(position) == Some(&b'\n') {
                            position += 1;
                        }
                    }
                    b'\n' => {}
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
    None
}

/// Decodes a hexadecimal string whose opening `<` was just read. White
/// space is ignored and a missing last digit counts as 0.
fn hex_string(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    for &byte in bytes.iter().take(MAX_URI_LEN * 2 + 64) {
        if byte == b'>' {
            if let Some(high) = high {
                out.push(high << 4);
            }
            return Some(out);
        }
        if is_white(byte) {
            continue;
        }
        let digit = (byte as char).to_digit(16)? as u8;
        match high.take() {
            Some(value) => out.push(value << 4 | digit),
            None => high = Some(digit),
        }
    }
    None
}

/// PDF white space: NUL, tab, line feed, form feed, carriage return, space.
fn is_white(byte: u8) -> bool {
    matches!(byte, 0 | b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(bytes: &[u8]) -> Vec<String> {
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes: 1 << 20,
            bytes_left: 1 << 20,
            hit: &mut record,
        };
        let mut found = Vec::new();
        let _ = link_targets(bytes, &mut budget, &mut |target| {
            found.push(target);
            ControlFlow::Continue(())
        });
        found
    }

    /// Builds a PDF with one Flate-compressed object stream that contains
    /// `objects`. Repeated filler follows the objects, so the compressed
    /// bytes do not contain their text as written.
    fn with_object_stream(objects: &str) -> Vec<u8> {
        let text = format!("{objects}\n{}", "0 0 0 RG 0 0 0 rg\n".repeat(64));
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(text.as_bytes(), 9);
        assert_eq!(find(&packed, b"/URI"), None);
        let mut pdf = format!(
            "%PDF-1.6\n5 0 obj\n<< /Type /ObjStm /N 1 /First 5 /Filter /FlateDecode /Length {} >>\nstream\r\n",
            packed.len()
        )
        .into_bytes();
        pdf.extend_from_slice(&packed);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\n%%EOF\n");
        pdf
    }

    #[test]
    fn detects_pdf_header() {
        assert!(is_pdf(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"));
        assert!(is_pdf(b"\xef\xbb\xbf%PDF-1.4\n"));
        assert!(!is_pdf(b"PK\x03\x04"));
        assert!(!is_pdf(b"%PDF"));
    }

    #[test]
    fn plain_link_annotations() {
        let pdf = b"%PDF-1.4\n4 0 obj\n<< /Type /Annot /Subtype /Link /A << /S /URI /URI (https://phish-login.example.org/account/verify?id=42) >> >>\nendobj\n\
            6 0 obj <</A<</S/URI/Type/Action/URI(http://malware.example.com/payload/dropper.exe)>>/Border[ 0 0 0]>> endobj\n";
        assert_eq!(
            targets(pdf),
            [
                "https://phish-login.example.org/account/verify?id=42",
                "http://malware.example.com/payload/dropper.exe"
            ]
        );
    }

    #[test]
    fn literal_string_escapes() {
        let pdf = b"%PDF-1.4\n<< /S /URI /URI (http://evil-domain.example.net/a\\(1\\)/b\\\n/c\\072\\0618(x)) >>\n";
        assert_eq!(
            targets(pdf),
            ["http://evil-domain.example.net/a(1)/b/c:18(x)"]
        );
        assert_eq!(
            targets(b"%PDF-1.4\n<< /URI (tel\\07208008801363) >>"),
            ["tel:08008801363"]
        );
    }

    #[test]
    fn long_or_endless_strings_skipped() {
        let long = format!(
            "%PDF-1.4\n<< /URI (http://a.example.com/{}) >>",
            "a".repeat(MAX_URI_LEN)
        );
        assert!(targets(long.as_bytes()).is_empty());
        let continued = format!(
            "%PDF-1.4\n<< /URI ({}http://a.example.com/) >>",
            "\\\n".repeat(MAX_URI_LEN * 2)
        );
        assert!(targets(continued.as_bytes()).is_empty());
    }

    #[test]
    fn hex_string_target() {
        // "http://c2-one.example.net/" in hexadecimal, with a line break.
        let pdf = b"%PDF-1.4\n<< /S /URI /URI <687474703A2F2F63322D6F6E652E6578616D706C652E6E65742F\n> >>";
        assert_eq!(targets(pdf), ["http://c2-one.example.net/"]);
    }

    #[test]
    fn action_name_and_damage_skipped() {
        // `/S /URI` alone, a dictionary, an unclosed string.
        assert!(targets(
            b"%PDF-1.4\n<< /S /URI >> << /URI << /X 1 >> >> << /URI (http://a.example.com/"
        )
        .is_empty());
        assert!(targets(b"%PDF-1.4\n<< /URI <68zz> >>").is_empty());
    }

    #[test]
    fn link_in_object_stream() {
        let pdf = with_object_stream(
            "13 0\n<<\n/S /URI\n/URI (https://phish-login.example.org/start)\n>>\n",
        );
        assert_eq!(targets(&pdf), ["https://phish-login.example.org/start"]);
    }

    #[test]
    fn object_stream_budget() {
        let pdf = with_object_stream(&format!(
            "1 0\n<< /URI (https://c2-two.example.net/) >>{}",
            " ".repeat(4000)
        ));
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes: 100,
            bytes_left: 1 << 20,
            hit: &mut record,
        };
        let mut found = Vec::new();
        let _ = link_targets(&pdf, &mut budget, &mut |target| {
            found.push(target);
            ControlFlow::Continue(())
        });
        assert_eq!(found, ["https://c2-two.example.net/"]);
        assert_eq!(budget.bytes_left, (1 << 20) - 100);
        assert_eq!(hits, ["max_archive_member_bytes"]);

        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes: 100,
            bytes_left: 0,
            hit: &mut record,
        };
        let mut found = Vec::new();
        let _ = link_targets(&pdf, &mut budget, &mut |target| {
            found.push(target);
            ControlFlow::Continue(())
        });
        assert!(found.is_empty());
        assert_eq!(hits, ["max_archive_bytes"]);
    }

    #[test]
    fn message_with_pdf_attachment() {
        use crate::extract::{from_message, Limits, Location, ObservableValue};
        use base64::Engine as _;

        let pdf = with_object_stream(
            "7 0\n<< /S /URI /URI (HTTPS://Phish-Login.example.org/account/verify?id=42) >>",
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(&pdf);
        let raw = format!(
            "From: billing@example.com\r\nTo: alice@example.net\r\nSubject: invoice\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nSee the attached invoice.\r\n\
             --b1\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
        );
        let found = from_message(raw.as_bytes(), &Limits::default());
        let attachment = Location::Attachment {
            index: 1,
            name: Some("invoice.pdf".to_string()),
        };
        let links: Vec<(ObservableValue, Location)> = found
            .observables
            .into_iter()
            .filter(|o| !matches!(o.value, ObservableValue::Hash(_)))
            .filter(|o| o.location != Location::Header("From".to_string()))
            .map(|o| (o.value, o.location))
            .collect();
        assert_eq!(
            links,
            [
                (
                    ObservableValue::Url(
                        "https://phish-login.example.org/account/verify?id=42".to_string()
                    ),
                    attachment.clone()
                ),
                (
                    ObservableValue::Domain("phish-login.example.org".to_string()),
                    Location::UrlHost(Box::new(attachment))
                ),
            ]
        );
        assert!(found.limits_hit.is_empty());
    }

    #[test]
    fn repeated_stream_names_skipped() {
        // One unterminated stream swallows the names after it, and only
        // the first MAX_OBJECT_STREAMS names are looked at.
        let pdf = format!(
            "%PDF-1.5\n{}",
            "1 0 obj << /Type /ObjStm /Filter /FlateDecode >> stream\n".repeat(10_000)
        );
        assert!(targets(pdf.as_bytes()).is_empty());
    }

    #[test]
    fn other_filters_not_inflated() {
        let mut pdf = with_object_stream("1 0\n<< /URI (https://c2-two.example.net/) >>");
        let at = find(&pdf, b"/Filter").unwrap();
        pdf.splice(
            at..at,
            b"/Filter [/ASCII85Decode /FlateDecode] ".iter().copied(),
        );
        assert!(targets(&pdf).is_empty());
    }
}
