//! Link targets of PDF attachments.
//!
//! Many phishing messages carry no link in their text: the link sits in an
//! attached PDF, as an annotation whose action opens a URL
//! (`<< /S /URI /URI (https://...) >>`). The scanner reads the string after
//! each `/URI` key, both in the file as written and inside the object
//! streams (`/Type /ObjStm`) where PDF 1.5 and later keep most objects.
//! A string is a literal `( ... )` string, with its escapes and nested
//! parentheses, or a hexadecimal `< ... >` string.
//!
//! Object streams are decoded through chains of the `/FlateDecode`,
//! `/ASCIIHexDecode` and `/ASCII85Decode` filters. A relative target is
//! resolved against the `/Base` of the document's URI dictionary
//! (`/URI << /Base (...) >>` in the catalog). Without a base it is passed
//! as written, so `www.example.com/path` still counts as a link.
//!
//! Not read: the text drawn on the pages, encrypted files (their strings
//! are ciphertext), and streams with other filters (LZW, DCT, ...). Flate
//! predictors (`/Predictor` in `/DecodeParms`) are not undone, so a link
//! in a stream that uses one is usually missed.

mod filters;
mod syntax;

use std::ops::ControlFlow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use filters::Filter;
use syntax::Parser;

/// Link strings longer than this are skipped, as in the text scanner.
const MAX_URI_LEN: usize = 8 * 1024;

/// How far around an `/ObjStm` name its dictionary is looked for.
const DICTIONARY_WINDOW: usize = 2048;

/// Maximum object streams read per PDF. The cap bounds the dictionary
/// searches in a file that repeats the `/ObjStm` name.
const MAX_OBJECT_STREAMS: usize = 256;

/// Maximum URI dictionaries parsed per PDF in search of a `/Base`.
const MAX_URI_DICTIONARIES: usize = 16;

/// Maximum relative targets held back until the end of the file, for a
/// `/Base` found after them. Later ones are passed as written.
const MAX_PENDING_TARGETS: usize = 256;

/// The two names the scanner stops at.
static KEYS: LazyLock<AhoCorasick> =
    LazyLock::new(|| AhoCorasick::new(["/URI", "/ObjStm"]).expect("fixed patterns build"));

/// Bounds of the decoding of one PDF. Each limit that is hit is passed to
/// `hit` by its `Limits` field name.
pub(crate) struct Budget<'h> {
    /// Maximum bytes decoded from one object stream by one filter.
    pub max_stream_bytes: usize,
    /// Decoded bytes left for the whole message.
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
/// the targets in object streams after those written plainly. A relative
/// target read before the document's base URL is resolved later, and one
/// in a document without a base is passed as written, at the end. Stops
/// when `emit` breaks. A target may be passed twice (a compressor may
/// leave text as written), so the caller removes repeats.
pub(crate) fn link_targets(
    bytes: &[u8],
    budget: &mut Budget<'_>,
    emit: &mut dyn FnMut(String) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut links = Links {
        emit,
        base: None,
        pending: Vec::new(),
        dictionaries_left: MAX_URI_DICTIONARIES,
    };
    let mut streams = Vec::new();
    for found in KEYS.find_iter(bytes) {
        if found.pattern().as_usize() == 0 {
            links.read_value(bytes, found.end())?;
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
        let Some(stream) = object_stream_at(bytes, at) else {
            continue;
        };
        previous_end = stream.end;
        let Some(decoded) = filters::decode(&stream.filters, stream.data, budget) else {
            continue;
        };
        for found in KEYS.find_iter(&decoded) {
            if found.pattern().as_usize() == 0 {
                links.read_value(&decoded, found.end())?;
            }
        }
    }
    links.finish()
}

/// Link targets on their way to `emit`, and the base URL that relative
/// targets resolve against.
struct Links<'e> {
    emit: &'e mut dyn FnMut(String) -> ControlFlow<()>,
    /// The `/Base` of the document's URI dictionary (`/URI << /Base (...)
    /// >>` in the catalog), the first one found.
    base: Option<url::Url>,
    /// Relative targets read before a base was found.
    pending: Vec<String>,
    /// URI dictionaries that may still be parsed in search of a base.
    dictionaries_left: usize,
}

impl Links<'_> {
    /// Reads the value of the `/URI` key that ends at `at`: a link target,
    /// or the URI dictionary of the catalog.
    fn read_value(&mut self, bytes: &[u8], at: usize) -> ControlFlow<()> {
        let white = bytes
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| syntax::is_white(**b))
            .count();
        let position = at + white;
        if bytes
            .get(position..)
            .is_some_and(|rest| rest.starts_with(b"<<"))
        {
            self.read_base(bytes, position);
            return ControlFlow::Continue(());
        }
        match string_at(bytes, position) {
            Some(target) => self.pass(target),
            None => ControlFlow::Continue(()),
        }
    }

    /// Takes the `/Base` of the URI dictionary at `position` when no base
    /// was found yet and it is an absolute URL.
    fn read_base(&mut self, bytes: &[u8], position: usize) {
        if self.base.is_some() || self.dictionaries_left == 0 {
            return;
        }
        self.dictionaries_left -= 1;
        let window_end = bytes.len().min(position.saturating_add(DICTIONARY_WINDOW));
        let Some(dictionary) = Parser::new(&bytes[..window_end], position).dictionary() else {
            return;
        };
        let Some(text) = dictionary.string(b"Base").and_then(text_of) else {
            return;
        };
        if let Ok(base) = url::Url::parse(&text) {
            if !base.cannot_be_a_base() {
                self.base = Some(base);
            }
        }
    }

    fn pass(&mut self, target: String) -> ControlFlow<()> {
        if !matches!(
            url::Url::parse(&target),
            Err(url::ParseError::RelativeUrlWithoutBase)
        ) {
            return (self.emit)(target);
        }
        match &self.base {
            Some(base) => (self.emit)(resolve(base, target)),
            None if self.pending.len() < MAX_PENDING_TARGETS => {
                self.pending.push(target);
                ControlFlow::Continue(())
            }
            // NOTE: a base found after this point is not applied to it.
            None => (self.emit)(target),
        }
    }

    /// Passes the relative targets that were held back for a base.
    fn finish(self) -> ControlFlow<()> {
        for target in self.pending {
            let target = match &self.base {
                Some(base) => resolve(base, target),
                None => target,
            };
            (self.emit)(target)?;
        }
        ControlFlow::Continue(())
    }
}

/// Resolves a relative target against `base`, or returns it as written
/// when the two do not join.
fn resolve(base: &url::Url, target: String) -> String {
    match base.join(&target) {
        Ok(joined) => joined.into(),
        Err(_) => target,
    }
}

/// An object stream (`/Type /ObjStm`) whose filters the scanner decodes.
struct ObjectStream<'a> {
    filters: Vec<Filter>,
    /// The stream data, still encoded.
    data: &'a [u8],
    /// Offset in the file where the data ends.
    end: usize,
}

/// Reads the object stream whose dictionary contains the `/ObjStm` name at
/// `at`. Returns `None` when the dictionary is damaged, is not that of an
/// object stream, names a filter that is not decoded, or no stream follows.
fn object_stream_at(bytes: &[u8], at: usize) -> Option<ObjectStream<'_>> {
    let window_start = at.saturating_sub(DICTIONARY_WINDOW);
    let before = bytes.get(window_start..at)?;
    let dictionary_start = match find_last(before, b"obj") {
        Some(header) => header + find(before.get(header..)?, b"<<")?,
        None => find_last(before, b"<<")?,
    };
    let window_end = bytes.len().min(at.saturating_add(DICTIONARY_WINDOW));
    let mut parser = Parser::new(bytes.get(..window_end)?, window_start + dictionary_start);
    let dictionary = parser.dictionary()?;
    if dictionary.name(b"Type") != Some(b"ObjStm") {
        return None;
    }
    let filters = filters::chain(&dictionary)?;
    parser.skip_white();
    let keyword = parser.position();
    if !bytes.get(keyword..)?.starts_with(b"stream") {
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
    let length = declared_length(&dictionary, rest).unwrap_or_else(|| {
        let end = find(rest, b"endstream").unwrap_or(rest.len());
        let data = &rest[..end];
        let data = data.strip_suffix(b"\n").unwrap_or(data);
        let data = data.strip_suffix(b"\r").unwrap_or(data);
        data.len()
    });
    Some(ObjectStream {
        filters,
        data: rest.get(..length)?,
        end: start + length,
    })
}

/// Returns the `/Length` of a stream whose data starts `rest` when it is a
/// direct integer and `endstream` follows the data, after white space.
fn declared_length(dictionary: &syntax::Dictionary, rest: &[u8]) -> Option<usize> {
    let length = usize::try_from(dictionary.integer(b"Length")?).ok()?;
    let after = rest.get(length..)?;
    let white = after
        .iter()
        .take(32)
        .take_while(|b| syntax::is_white(**b))
        .count();
    after
        .get(white..)?
        .starts_with(b"endstream")
        .then_some(length)
}

/// Reads the link string at `position`. Returns `None` for the `/URI`
/// action type name and for anything that is not a string.
fn string_at(bytes: &[u8], position: usize) -> Option<String> {
    let (raw, _) = match bytes.get(position)? {
        b'(' => syntax::literal_string(bytes.get(position + 1..)?)?,
        b'<' if bytes.get(position + 1) != Some(&b'<') => {
            syntax::hex_string(bytes.get(position + 1..)?)?
        }
        _ => return None,
    };
    text_of(&raw)
}

/// Returns a link string as text without surrounding white space, or
/// `None` when it is empty or longer than `MAX_URI_LEN`.
fn text_of(raw: &[u8]) -> Option<String> {
    if raw.len() > MAX_URI_LEN {
        return None;
    }
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
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
        with_stream("/FlateDecode", &packed(objects))
    }

    /// Compresses `objects` and repeated filler with zlib.
    fn packed(objects: &str) -> Vec<u8> {
        let text = format!("{objects}\n{}", "0 0 0 RG 0 0 0 rg\n".repeat(64));
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(text.as_bytes(), 9);
        assert_eq!(find(&packed, b"/URI"), None);
        packed
    }

    /// Builds a PDF with one object stream, object 5, whose encoded data is
    /// `data` and whose `/Filter` value is `filter`.
    fn with_stream(filter: &str, data: &[u8]) -> Vec<u8> {
        let mut pdf = format!(
            "%PDF-1.6\n5 0 obj\n<< /Type /ObjStm /N 1 /First 5 /Filter {filter} /Length {} >>\nstream\r\n",
            data.len()
        )
        .into_bytes();
        pdf.extend_from_slice(data);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\n%%EOF\n");
        pdf
    }

    /// Encodes `data` in base 85 with the `~>` end marker, four zero bytes
    /// as `z`.
    fn ascii85_encode(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in data.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            let mut value = u32::from_be_bytes(word);
            if chunk.len() == 4 && value == 0 {
                out.push(b'z');
                continue;
            }
            let mut digits = [0u8; 5];
            for digit in digits.iter_mut().rev() {
                *digit = (value % 85) as u8 + b'!';
                value /= 85;
            }
            out.extend_from_slice(&digits[..chunk.len() + 1]);
        }
        out.extend_from_slice(b"~>");
        out
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
            "\\\n".repeat(syntax::MAX_STRING_LEN * 2)
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
    fn ascii85_flate_chain() {
        let data = ascii85_encode(&packed(
            "1 0\n<< /S /URI /URI (https://c2-two.example.net/a85) >>",
        ));
        for filter in ["[/ASCII85Decode /FlateDecode]", "[/A85 /Fl]"] {
            assert_eq!(
                targets(&with_stream(filter, &data)),
                ["https://c2-two.example.net/a85"],
                "{filter}"
            );
        }
    }

    #[test]
    fn ascii_hex_streams() {
        let objects = "1 0\n<< /S /URI /URI (https://c2-two.example.net/hex) >>";
        let alone = hex::encode(objects.as_bytes()) + ">";
        assert_eq!(
            targets(&with_stream("/ASCIIHexDecode", alone.as_bytes())),
            ["https://c2-two.example.net/hex"]
        );
        let chained = hex::encode_upper(packed(objects)) + ">";
        assert_eq!(
            targets(&with_stream("[/AHx /Fl]", chained.as_bytes())),
            ["https://c2-two.example.net/hex"]
        );
        // An ASCII85 stream of plain text, as a chain of one.
        let text = ascii85_encode(objects.as_bytes());
        assert_eq!(
            targets(&with_stream("[/ASCII85Decode]", &text)),
            ["https://c2-two.example.net/hex"]
        );
    }

    #[test]
    fn other_filters_not_decoded() {
        let data = packed("1 0\n<< /URI (https://c2-two.example.net/) >>");
        for filter in [
            "/LZWDecode",
            "[/FlateDecode /DCTDecode]",
            "[/Crypt /FlateDecode]",
            "[]",
            "[/Fl /Fl /Fl /Fl /Fl]",
        ] {
            assert!(targets(&with_stream(filter, &data)).is_empty(), "{filter}");
        }
    }

    #[test]
    fn object_stream_type_checked() {
        // `/ObjStm` as the value of another key is not an object stream.
        let data = packed("1 0\n<< /URI (https://c2-two.example.net/) >>");
        let mut pdf = with_stream("/FlateDecode", &data);
        let at = find(&pdf, b"/Type /ObjStm").unwrap();
        pdf.splice(at..at + 13, b"/Type /XObject /Note /ObjStm".iter().copied());
        assert!(targets(&pdf).is_empty());
    }

    #[test]
    fn filter_chain_budget() {
        let data = hex::encode(packed(&format!(
            "1 0\n<< /URI (https://c2-two.example.net/) >>{}",
            " ".repeat(4000)
        )));
        let pdf = with_stream("[/AHx /Fl]", data.as_bytes());
        let packed_len = data.len() / 2;

        // The ASCIIHex output fits, the Flate output is cut at 100 bytes.
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
        assert!(packed_len < 100, "{packed_len}");
        assert_eq!(found, ["https://c2-two.example.net/"]);
        assert_eq!(budget.bytes_left, (1 << 20) - packed_len - 100);
        assert_eq!(hits, ["max_archive_member_bytes"]);

        // The message budget ends 10 bytes into the Flate output.
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes: 1 << 20,
            bytes_left: packed_len + 10,
            hit: &mut record,
        };
        let mut found = Vec::new();
        let _ = link_targets(&pdf, &mut budget, &mut |target| {
            found.push(target);
            ControlFlow::Continue(())
        });
        assert!(found.is_empty());
        assert_eq!(budget.bytes_left, 0);
        assert_eq!(hits, ["max_archive_bytes"]);

        // No budget left before the first filter.
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes: 1 << 20,
            bytes_left: 0,
            hit: &mut record,
        };
        let _ = link_targets(&pdf, &mut budget, &mut |_| ControlFlow::Continue(()));
        assert_eq!(hits, ["max_archive_bytes"]);
    }

    #[test]
    fn stream_length_or_endstream() {
        // A wrong `/Length` falls back to the `endstream` keyword.
        let data = packed("1 0\n<< /URI (https://c2-two.example.net/len) >>");
        let mut pdf = with_stream("/FlateDecode", &data);
        let at = find(&pdf, b"/Length ").unwrap() + b"/Length ".len();
        pdf.splice(at..at, b"9".iter().copied());
        assert_eq!(targets(&pdf), ["https://c2-two.example.net/len"]);
    }

    const CATALOG: &str =
        "1 0 obj\n<< /Type /Catalog /Pages 2 0 R /URI << /Base (https://files.example.com/share/) >> >>\nendobj\n";

    const ANNOTATIONS: &str = "4 0 obj\n<< /S /URI /URI (login.php?id=7) >>\nendobj\n\
        5 0 obj\n<< /S /URI /URI (https://www.example.net/help) >>\nendobj\n\
        6 0 obj\n<< /S /URI /URI (../pay/index.html) >>\nendobj\n";

    #[test]
    fn base_before_targets() {
        let pdf = format!("%PDF-1.4\n{CATALOG}{ANNOTATIONS}");
        assert_eq!(
            targets(pdf.as_bytes()),
            [
                "https://files.example.com/share/login.php?id=7",
                "https://www.example.net/help",
                "https://files.example.com/pay/index.html"
            ]
        );
    }

    #[test]
    fn base_after_targets() {
        let pdf = format!("%PDF-1.4\n{ANNOTATIONS}{CATALOG}");
        assert_eq!(
            targets(pdf.as_bytes()),
            [
                "https://www.example.net/help",
                "https://files.example.com/share/login.php?id=7",
                "https://files.example.com/pay/index.html"
            ]
        );
    }

    #[test]
    fn base_in_object_stream() {
        let catalog = "1 0\n<< /Type /Catalog /URI << /Base <68747470733A2F2F66696C65732E6578616D706C652E636F6D2F> >> >>";
        let mut pdf = with_stream("/FlateDecode", &packed(catalog));
        pdf.extend_from_slice(ANNOTATIONS.as_bytes());
        assert_eq!(
            targets(&pdf),
            [
                "https://www.example.net/help",
                "https://files.example.com/login.php?id=7",
                "https://files.example.com/pay/index.html"
            ]
        );
    }

    #[test]
    fn relative_without_base() {
        // Without a usable base, relative targets are passed as written,
        // after the others.
        for catalog in [
            "",
            "1 0 obj << /URI << /Base (files/share/) >> >> endobj\n",
            "1 0 obj << /URI << /Base (mailto:help@example.com) >> >> endobj\n",
            "1 0 obj << /URI << /Base /NotAString >> >> endobj\n",
        ] {
            let pdf = format!(
                "%PDF-1.4\n{catalog}{ANNOTATIONS}7 0 obj << /URI (www.example.org/start) >> endobj\n"
            );
            assert_eq!(
                targets(pdf.as_bytes()),
                [
                    "https://www.example.net/help",
                    "login.php?id=7",
                    "../pay/index.html",
                    "www.example.org/start"
                ],
                "{catalog}"
            );
        }
    }

    #[test]
    fn first_base_wins() {
        let second = CATALOG.replace("files.example.com", "other.example.net");
        let pdf = format!("%PDF-1.4\n{CATALOG}{second}{ANNOTATIONS}");
        assert_eq!(
            targets(pdf.as_bytes())[0],
            "https://files.example.com/share/login.php?id=7"
        );
    }
}
