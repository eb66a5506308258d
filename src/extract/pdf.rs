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
//! Encrypted files that open without a password (the standard security
//! handler with an empty user password, RC4, AES-128 or AES-256) are
//! decrypted: strings with the key of the object that contains them, and
//! object streams as a whole. See [`crypt`].
//!
//! Not read: the text drawn on the pages, files that need a password or
//! another security handler, and streams with other filters (LZW, DCT,
//! Crypt, ...). Flate predictors (`/Predictor` in `/DecodeParms`) are not
//! undone, so a link in a stream that uses one is usually missed.

mod crypt;
mod filters;
mod syntax;

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crypt::{Decryptor, Security};
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
    let security = crypt::security(bytes);
    let decryptor = match &security {
        Security::Plain => None,
        Security::Decrypt(decryptor) => Some(decryptor),
        Security::Unreadable => return ControlFlow::Continue(()),
    };
    let mut links = Links {
        emit,
        base: None,
        pending: Vec::new(),
        dictionaries_left: MAX_URI_DICTIONARIES,
        objects: crypt::ObjectTracker::default(),
    };
    let mut streams = Vec::new();
    for found in KEYS.find_iter(bytes) {
        if found.pattern().as_usize() == 0 {
            links.read_value(bytes, found.end(), decryptor)?;
        } else if streams.len() < MAX_OBJECT_STREAMS {
            streams.push(found.start());
        }
    }
    // Streams do not overlap, so a name inside the data of the previous
    // stream is skipped and every byte is searched for `endstream` once.
    let mut previous_end = 0;
    for at in streams {
        if at < previous_end {
            continue;
        }
        let Some(stream) = object_stream_at(bytes, at) else {
            continue;
        };
        previous_end = stream.end;
        let data = match decryptor {
            None => Cow::Borrowed(stream.data),
            Some(decryptor) => {
                let plain = stream
                    .object
                    .and_then(|object| decryptor.stream(object, stream.data));
                match plain {
                    Some(plain) => Cow::Owned(plain),
                    None => continue,
                }
            }
        };
        let Some(decoded) = filters::decode(&stream.filters, &data, budget) else {
            continue;
        };
        // The objects in an object stream are not encrypted on their own.
        for found in KEYS.find_iter(&decoded) {
            if found.pattern().as_usize() == 0 {
                links.read_value(&decoded, found.end(), None)?;
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
    /// The objects around the strings of an encrypted file.
    objects: crypt::ObjectTracker,
}

impl Links<'_> {
    /// Reads the value of the `/URI` key that ends at `at`: a link target,
    /// or the URI dictionary of the catalog. Strings are decrypted with
    /// `decryptor` when it is given.
    fn read_value(
        &mut self,
        bytes: &[u8],
        at: usize,
        decryptor: Option<&Decryptor>,
    ) -> ControlFlow<()> {
        let position = at + syntax::white_run(bytes.get(at..).unwrap_or_default());
        if bytes
            .get(position..)
            .is_some_and(|rest| rest.starts_with(b"<<"))
        {
            self.read_base(bytes, position, decryptor);
            return ControlFlow::Continue(());
        }
        let target = string_at(bytes, position)
            .and_then(|raw| self.decrypt_string(bytes, position, raw, decryptor))
            .and_then(|raw| text_of(&raw));
        match target {
            Some(target) => self.pass(target),
            None => ControlFlow::Continue(()),
        }
    }

    /// Takes the `/Base` of the URI dictionary at `position` when no base
    /// was found yet and it is an absolute URL.
    fn read_base(&mut self, bytes: &[u8], position: usize, decryptor: Option<&Decryptor>) {
        if self.base.is_some() || self.dictionaries_left == 0 {
            return;
        }
        self.dictionaries_left -= 1;
        let Some(dictionary) = Parser::new(window(bytes, position), position).dictionary() else {
            return;
        };
        let Some(text) = dictionary
            .string(b"Base")
            .and_then(|raw| self.decrypt_string(bytes, position, raw.to_vec(), decryptor))
            .and_then(|raw| text_of(&raw))
        else {
            return;
        };
        if let Ok(base) = url::Url::parse(&text) {
            if !base.cannot_be_a_base() {
                self.base = Some(base);
            }
        }
    }

    /// Decrypts a string read at `position` in the file with the key of the
    /// object that contains it, or returns it as it is without `decryptor`.
    fn decrypt_string(
        &mut self,
        bytes: &[u8],
        position: usize,
        raw: Vec<u8>,
        decryptor: Option<&Decryptor>,
    ) -> Option<Vec<u8>> {
        match decryptor {
            None => Some(raw),
            Some(decryptor) => decryptor.string(self.objects.object_at(bytes, position)?, &raw),
        }
    }

    /// Passes `target` to `emit`, resolved against the base when it is
    /// relative. Relative targets read before any base are held back, up
    /// to `MAX_PENDING_TARGETS` of them.
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
    /// Number and generation from the `N G obj` header, when it was read.
    object: Option<(u32, u16)>,
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
    let (object, dictionary_start) = match find_last(before, b"obj") {
        Some(keyword) => (
            syntax::object_header_before(bytes, window_start + keyword),
            keyword + find(before.get(keyword..)?, b"<<")?,
        ),
        None => (None, find_last(before, b"<<")?),
    };
    let mut parser = Parser::new(window(bytes, at), window_start + dictionary_start);
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
        object,
        filters,
        data: rest.get(..length)?,
        end: start + length,
    })
}

/// Returns the `/Length` of a stream whose data is at the start of `rest`
/// when it is a direct integer and `endstream` follows the data, after
/// white space.
fn declared_length(dictionary: &syntax::Dictionary, rest: &[u8]) -> Option<usize> {
    let length = usize::try_from(dictionary.integer(b"Length")?).ok()?;
    let after = rest.get(length..)?;
    let white = syntax::white_run(&after[..after.len().min(32)]);
    after
        .get(white..)?
        .starts_with(b"endstream")
        .then_some(length)
}

/// Reads the link string at `position`. Returns `None` for the `/URI`
/// action type name and for anything that is not a string.
fn string_at(bytes: &[u8], position: usize) -> Option<Vec<u8>> {
    let (raw, _) = match bytes.get(position)? {
        b'(' => syntax::literal_string(bytes.get(position + 1..)?)?,
        b'<' if bytes.get(position + 1) != Some(&b'<') => {
            syntax::hex_string(bytes.get(position + 1..)?)?
        }
        _ => return None,
    };
    Some(raw)
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

/// Returns the bytes from the start of the file to `DICTIONARY_WINDOW`
/// bytes past `at`, so that a parser started at `at` reads a bounded
/// amount.
fn window(bytes: &[u8], at: usize) -> &[u8] {
    &bytes[..bytes.len().min(at.saturating_add(DICTIONARY_WINDOW))]
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
        targets_within(bytes, 1 << 20, 1 << 20).0
    }

    /// Returns the targets of `bytes` read within a budget, the bytes left
    /// of it, and the names of the limits hit.
    fn targets_within(
        bytes: &[u8],
        max_stream_bytes: usize,
        bytes_left: usize,
    ) -> (Vec<String>, usize, Vec<&'static str>) {
        let mut hits = Vec::new();
        let mut record = |name: &'static str| hits.push(name);
        let mut budget = Budget {
            max_stream_bytes,
            bytes_left,
            hit: &mut record,
        };
        let mut found = Vec::new();
        let _ = link_targets(bytes, &mut budget, &mut |target| {
            found.push(target);
            ControlFlow::Continue(())
        });
        let bytes_left = budget.bytes_left;
        (found, bytes_left, hits)
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

        assert!(packed_len < 100, "{packed_len}");

        // The ASCIIHex output fits, the Flate output is cut at 100 bytes.
        let (found, bytes_left, hits) = targets_within(&pdf, 100, 1 << 20);
        assert_eq!(found, ["https://c2-two.example.net/"]);
        assert_eq!(bytes_left, (1 << 20) - packed_len - 100);
        assert_eq!(hits, ["max_archive_member_bytes"]);

        // The message budget ends 10 bytes into the Flate output.
        let (found, bytes_left, hits) = targets_within(&pdf, 1 << 20, packed_len + 10);
        assert!(found.is_empty());
        assert_eq!(bytes_left, 0);
        assert_eq!(hits, ["max_archive_bytes"]);

        // No budget left before the first filter.
        let (found, bytes_left, hits) = targets_within(&pdf, 1 << 20, 0);
        assert!(found.is_empty());
        assert_eq!(bytes_left, 0);
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

    /// Values that qpdf 11.3.0 wrote for object 4 of a small test file with
    /// `qpdf --encrypt "" owner BITS`, for 40, 128 (AES) and 256 bits, the
    /// last with `--force-R5` too.
    const QPDF_FILES: [(&str, &str, &str, &str); 4] = [
        (
            "b5b6b95c8426309f02548415f632017b02dae2f29529d58d5c3c809525f9348702bd9c191247df6515f5ecb0",
            "/Filter /Standard /Length 40 /O <c92422687facee686e373f10b5c7d04738053152f7e2ee30e11c69ec442576ab> \
             /P -4 /R 2 /U <adf9953815148ff19e1e82f9fabb89719cd0570a4743c56c728c4a9639909e0e> /V 1",
            "a69d3efa24caf5b22ff0a7cfb2a6c039",
            "RC4 40-bit",
        ),
        (
            "87da43b509c06ddeef461fc18d86b1193c56857b24130fbaf85e83b517c1d0764ff8eab0454e3d9a316bd52b0c5a93cc11b58a70bb7d5c908b050c45c0a9b7a0",
            "/CF << /StdCF << /AuthEvent /DocOpen /CFM /AESV2 /Length 16 >> >> /Filter /Standard /Length 128 \
             /O <566fa873ee33c797cd3b904fdadf814afa34df9a38f6ed41b984e2c6da2aa6f5> /P -4 /R 4 /StmF /StdCF /StrF /StdCF \
             /U <c67740fabcdc53a103afde17a63072680122456a91bae5134273a6db134c87c4> /V 4",
            "5a5df7c9ff767e2b2bd798c1ffe7cf1d",
            "AES-128",
        ),
        (
            "ffbfa3c5591ee0f32637c173fe630542595a15549204903add513b11aec68d20deb7e01b37a9e96da218871cf358199c70fa06e5ffc2f43e3b48e8ccf6fe367c",
            "/CF << /StdCF << /AuthEvent /DocOpen /CFM /AESV3 /Length 32 >> >> /Filter /Standard /Length 256 \
             /O <36315e93eed213f7e2f2cfaad68a72e49a6a6ade4988fc9769ef89bfbd3793463022ea4a7923f2c1c4c8de813eac5607> \
             /OE <bab0de036364092752dbdddb70d572dd207b7c21bd78f212cfd57e32437c12b0> /P -4 \
             /Perms <746b63ed2dc5751b9af9c48d5a950d28> /R 6 /StmF /StdCF /StrF /StdCF \
             /U <0cda04323eb43e70ed4a2b9acf472d6b61112de37d51f7602cd5ee2875b43f872ac23bf17d74a4122858e274ee0dfae5> \
             /UE <cc6508f66adbf6fcdf61b55e237f36eed5f1c6197e95540757a904d373aabb04> /V 5",
            "b54536e3e19ae865204c1f02e0a9204f",
            "AES-256",
        ),
        (
            "5f08db3b3154a1b0b9de0cc73c1bc159ac7f418e49729d2b47578d5b9167142437fcd35cfc6ed61ca3c7221eaa4bf75a7e5dbfc97cd061269b9c846f6cdc454f",
            "/CF << /StdCF << /AuthEvent /DocOpen /CFM /AESV3 /Length 32 >> >> /Filter /Standard /Length 256 \
             /O <4b2d4d6dc117852313917163180a283c5bc415d1b44ee4f826e157ed2b171af39d87c580b184ba428c1db8190a6700ba> \
             /OE <b5a7d1e56467bc4f79df46bd35265901ef3bae6c8ba256f4c109973cf3e919bd> /P -4 \
             /Perms <70e10d42e84d5a3e12f42b0151c75ae6> /R 5 /StmF /StdCF /StrF /StdCF \
             /U <64a64ebcb8bbd8421ebddffbec146c73b267cfdadc81b764bbfeb333f5ab5915d16eea854ae156308dabde1cc0a02936> \
             /UE <aef7d5d34d75109c039d21ca331413a34f096d2f188d437ad3fa319cb4e02e0e> /V 5",
            "2728ab5132ef66f2d73330996f35d15b",
            "AES-256 revision 5",
        ),
    ];

    #[test]
    fn qpdf_encrypted_files() {
        for (ciphertext, encrypt, id, name) in QPDF_FILES {
            let pdf = format!(
                "%PDF-1.7\n4 0 obj\n<< /A << /S /URI /URI <{ciphertext}> >> /Subtype /Link /Type /Annot >>\nendobj\n\
                 6 0 obj\n<< {encrypt} >>\nendobj\n\
                 trailer << /Root 1 0 R /Size 7 /ID [<{id}><{id}>] /Encrypt 6 0 R >>\n%%EOF\n"
            );
            assert_eq!(
                targets(pdf.as_bytes()),
                ["https://phish-login.example.org/verify?id=42"],
                "{name}"
            );
        }
    }

    /// The encryption of a test file.
    #[derive(Clone, Copy, Debug)]
    enum Scheme {
        /// RC4 with a key of this many bytes, revision 2 or 3.
        Rc4 { bytes: usize, revision: i64 },
        /// AES-128 crypt filters, revision 4.
        Aes128,
        /// AES-256 crypt filters, revision 6.
        Aes256,
    }

    const OWNER: [u8; 32] = [0x5a; 32];
    const PERMISSIONS: i32 = -3904;
    const ID: [u8; 16] = *b"test-document-id";
    const IV: [u8; 16] = *b"fixed-iv-for-aes";

    /// Writes the encryption dictionary of `scheme` for the empty user
    /// password and returns it with the file key.
    fn encryption(scheme: Scheme) -> (String, Vec<u8>) {
        match scheme {
            Scheme::Rc4 { bytes, revision } => {
                let key = md5_file_key(bytes, revision);
                let user = rc4_user_entry(&key, revision);
                let dictionary = format!(
                    "/Filter /Standard /V {} /R {revision} /Length {} /O <{}> /U <{}> /P {PERMISSIONS}",
                    if bytes == 5 { 1 } else { 2 },
                    bytes * 8,
                    hex::encode(OWNER),
                    hex::encode(user)
                );
                (dictionary, key)
            }
            Scheme::Aes128 => {
                let key = md5_file_key(16, 4);
                let user = rc4_user_entry(&key, 4);
                let dictionary = format!(
                    "/Filter /Standard /V 4 /R 4 /Length 128 /CF << /StdCF << /CFM /AESV2 /AuthEvent /DocOpen >> >> \
                     /StmF /StdCF /StrF /StdCF /O <{}> /U <{}> /P {PERMISSIONS}",
                    hex::encode(OWNER),
                    hex::encode(user)
                );
                (dictionary, key)
            }
            Scheme::Aes256 => {
                let key = vec![0x42u8; 32];
                let validation_salt = *b"v-salt-1";
                let key_salt = *b"k-salt-2";
                let mut user = crypt::hardened_hash(b"", &validation_salt, b"").to_vec();
                user.extend_from_slice(&validation_salt);
                user.extend_from_slice(&key_salt);
                let intermediate = crypt::hardened_hash(b"", &key_salt, b"");
                let user_key = aes_cbc_encrypt(&intermediate, &[0; 16], &key, false);
                let dictionary = format!(
                    "/Filter /Standard /V 5 /R 6 /Length 256 /CF << /StdCF << /CFM /AESV3 >> >> \
                     /StmF /StdCF /StrF /StdCF /O <{}> /U <{}> /UE <{}> /P {PERMISSIONS}",
                    hex::encode([OWNER, OWNER].concat()),
                    hex::encode(user),
                    hex::encode(&user_key[16..])
                );
                (dictionary, key)
            }
        }
    }

    fn md5_file_key(bytes: usize, revision: i64) -> Vec<u8> {
        use md5::{Digest, Md5};
        let mut input = crypt::PASSWORD_PADDING.to_vec();
        input.extend_from_slice(&OWNER);
        input.extend_from_slice(&PERMISSIONS.to_le_bytes());
        input.extend_from_slice(&ID);
        let mut digest = Md5::digest(&input).to_vec();
        if revision >= 3 {
            for _ in 0..50 {
                digest = Md5::digest(&digest[..bytes]).to_vec();
            }
        }
        digest.truncate(bytes);
        digest
    }

    fn rc4_user_entry(key: &[u8], revision: i64) -> Vec<u8> {
        use md5::{Digest, Md5};
        if revision == 2 {
            let mut user = crypt::PASSWORD_PADDING.to_vec();
            crypt::rc4(key, &mut user).unwrap();
            return user;
        }
        let mut user = Md5::digest([&crypt::PASSWORD_PADDING[..], &ID].concat()).to_vec();
        for round in 0..20u8 {
            let round_key: Vec<u8> = key.iter().map(|byte| byte ^ round).collect();
            crypt::rc4(&round_key, &mut user).unwrap();
        }
        user.extend_from_slice(&[0; 16]);
        user
    }

    /// Encrypts with AES-CBC under `key` (16 or 32 bytes) and returns the
    /// initialization vector followed by the ciphertext, with PKCS #7
    /// padding when `pad` is set.
    fn aes_cbc_encrypt(key: &[u8], iv: &[u8; 16], data: &[u8], pad: bool) -> Vec<u8> {
        use aes::cipher::generic_array::GenericArray;
        use aes::cipher::{BlockEncryptMut, KeyIvInit};
        let mut out = data.to_vec();
        if pad {
            let padding = 16 - data.len() % 16;
            out.extend(std::iter::repeat_n(padding as u8, padding));
        }
        let blocks = out.chunks_exact_mut(16).map(GenericArray::from_mut_slice);
        if key.len() == 16 {
            let mut encryptor = cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv).unwrap();
            blocks.for_each(|block| encryptor.encrypt_block_mut(block));
        } else {
            let mut encryptor = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv).unwrap();
            blocks.for_each(|block| encryptor.encrypt_block_mut(block));
        }
        [&iv[..], &out].concat()
    }

    /// Encrypts a string or stream of object `number` (generation 0).
    fn encrypt(scheme: Scheme, key: &[u8], number: u32, data: &[u8]) -> Vec<u8> {
        use md5::{Digest, Md5};
        let object_key = |salt: &[u8]| {
            let input = [key, &number.to_le_bytes()[..3], &[0, 0], salt].concat();
            let digest = Md5::digest(&input);
            digest[..(key.len() + 5).min(16)].to_vec()
        };
        match scheme {
            Scheme::Rc4 { .. } => {
                let mut out = data.to_vec();
                crypt::rc4(&object_key(b""), &mut out).unwrap();
                out
            }
            Scheme::Aes128 => aes_cbc_encrypt(&object_key(b"sAlT"), &IV, data, true),
            Scheme::Aes256 => aes_cbc_encrypt(key, &IV, data, true),
        }
    }

    /// Builds an encrypted PDF: a catalog with a `/Base`, two link
    /// annotations, one relative, and an ASCII85 and Flate object stream
    /// with a third link.
    fn encrypted_pdf(scheme: Scheme) -> Vec<u8> {
        let (dictionary, key) = encryption(scheme);
        let string =
            |number: u32, text: &str| hex::encode(encrypt(scheme, &key, number, text.as_bytes()));
        // Encryption applies to the stream data as stored, after the
        // filters encoded it.
        let stream = encrypt(
            scheme,
            &key,
            8,
            &ascii85_encode(&packed(
                "9 0\n<< /S /URI /URI (https://c2-two.example.net/in-stream) >>",
            )),
        );
        let mut pdf = format!(
            "%PDF-1.7\n1 0 obj\n<< /Type /Catalog /URI << /Base <{}> >> >>\nendobj\n\
             4 0 obj\n<< /A << /S /URI /URI <{}> >> >>\nendobj\n\
             5 0 obj\n<< /A << /S /URI /URI <{}> >> >>\nendobj\n\
             8 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter [/A85 /Fl] /Length {} >>\nstream\n",
            string(1, "https://files.example.com/share/"),
            string(4, "https://phish-login.example.org/verify?id=42"),
            string(5, "login/index.php"),
            stream.len()
        )
        .into_bytes();
        pdf.extend_from_slice(&stream);
        pdf.extend_from_slice(
            format!(
                "\nendstream\nendobj\n6 0 obj\n<< {dictionary} >>\nendobj\n\
                 trailer\n<< /Root 1 0 R /ID [<{id}> <{id}>] /Encrypt 6 0 R >>\n%%EOF\n",
                id = hex::encode(ID)
            )
            .as_bytes(),
        );
        pdf
    }

    const ENCRYPTED_TARGETS: [&str; 3] = [
        "https://phish-login.example.org/verify?id=42",
        "https://files.example.com/share/login/index.php",
        "https://c2-two.example.net/in-stream",
    ];

    #[test]
    fn encrypted_with_empty_password() {
        for scheme in [
            Scheme::Rc4 {
                bytes: 5,
                revision: 2,
            },
            Scheme::Rc4 {
                bytes: 5,
                revision: 3,
            },
            Scheme::Rc4 {
                bytes: 16,
                revision: 3,
            },
            Scheme::Rc4 {
                bytes: 7,
                revision: 3,
            },
            Scheme::Aes128,
            Scheme::Aes256,
        ] {
            let pdf = encrypted_pdf(scheme);
            assert_eq!(find(&pdf, b"example"), None, "{scheme:?}");
            assert_eq!(targets(&pdf), ENCRYPTED_TARGETS, "{scheme:?}");
        }
    }

    /// Replaces the first `from` in `pdf` with `to`.
    fn replaced(pdf: &[u8], from: &str, to: &str) -> Vec<u8> {
        let at = find(pdf, from.as_bytes()).unwrap();
        [&pdf[..at], to.as_bytes(), &pdf[at + from.len()..]].concat()
    }

    #[test]
    fn encryption_dictionary_inline() {
        // The dictionary written in the trailer instead of object 6.
        let pdf = encrypted_pdf(Scheme::Aes128);
        let start = find(&pdf, b"6 0 obj\n<< ").unwrap() + "6 0 obj\n".len();
        let end = start + find(&pdf[start..], b"\nendobj").unwrap();
        let dictionary = String::from_utf8(pdf[start..end].to_vec()).unwrap();
        let inline = replaced(&pdf, "/Encrypt 6 0 R", &format!("/Encrypt {dictionary}"));
        let inline = replaced(
            &inline,
            "6 0 obj\n<<",
            "6 0 obj\n<< /Unused 1 >>\nendobj\n7 0 obj\n<<",
        );
        assert_eq!(targets(&inline), ENCRYPTED_TARGETS);
    }

    #[test]
    fn identity_string_filter() {
        // Strings in the clear, streams encrypted with AES-128.
        let (dictionary, key) = encryption(Scheme::Aes128);
        let dictionary = dictionary.replace("/StrF /StdCF", "/StrF /Identity");
        let stream = encrypt(
            Scheme::Aes128,
            &key,
            8,
            &packed("9 0\n<< /URI (https://c2-two.example.net/in-stream) >>"),
        );
        let mut pdf = format!(
            "%PDF-1.6\n4 0 obj\n<< /URI (https://phish-login.example.org/plain) >>\nendobj\n\
             8 0 obj\n<< /Type /ObjStm /Filter /FlateDecode /Length {} >>\nstream\n",
            stream.len()
        )
        .into_bytes();
        pdf.extend_from_slice(&stream);
        pdf.extend_from_slice(
            format!(
                "\nendstream\nendobj\n6 0 obj\n<< {dictionary} >>\nendobj\n\
                 trailer << /ID [<{}>] /Encrypt 6 0 R >>\n",
                hex::encode(ID)
            )
            .as_bytes(),
        );
        assert_eq!(
            targets(&pdf),
            [
                "https://phish-login.example.org/plain",
                "https://c2-two.example.net/in-stream"
            ]
        );
    }

    #[test]
    fn unreadable_encryption_skipped() {
        let pdf = encrypted_pdf(Scheme::Rc4 {
            bytes: 16,
            revision: 3,
        });
        let user_start = find(&pdf, b"/U <").unwrap() + "/U <".len();
        let mut wrong_user = pdf.clone();
        // A user password that is not empty gives another `/U`.
        wrong_user[user_start..user_start + 2].copy_from_slice(b"00");
        let cases = [
            ("user password", wrong_user),
            (
                "public-key handler",
                replaced(&pdf, "/Filter /Standard", "/Filter /Adobe.PubSec"),
            ),
            ("unknown revision", replaced(&pdf, "/R 3", "/R 7")),
            ("key length", replaced(&pdf, "/Length 128", "/Length 44")),
            (
                "no crypt method",
                replaced(&encrypted_pdf(Scheme::Aes128), "/CFM /AESV2", "/CFM /None"),
            ),
            (
                "AES-256 user password",
                replaced(&encrypted_pdf(Scheme::Aes256), "/U <", "/U <00"),
            ),
        ];
        for (name, pdf) in cases {
            assert!(targets(&pdf).is_empty(), "{name}");
        }
    }

    #[test]
    fn damaged_encryption_read_as_plain() {
        // An `/Encrypt` entry whose dictionary cannot be found leaves the
        // file as written.
        let pdf = b"%PDF-1.4\n4 0 obj << /URI (https://www.example.com/a) >> endobj\n\
            trailer << /Encrypt 99 0 R >>\n/EncryptMetadata false\n";
        assert_eq!(targets(pdf), ["https://www.example.com/a"]);
    }

    #[test]
    fn message_with_encrypted_pdf() {
        use crate::extract::{from_message, Limits, ObservableValue};
        use base64::Engine as _;

        let encoded =
            base64::engine::general_purpose::STANDARD.encode(encrypted_pdf(Scheme::Aes128));
        let raw = format!(
            "From: billing@example.com\r\nTo: alice@example.net\r\nSubject: statement\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
             --b1\r\nContent-Type: text/plain\r\n\r\nYour statement is attached.\r\n\
             --b1\r\nContent-Type: application/pdf; name=\"statement.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
        );
        let found = from_message(raw.as_bytes(), &Limits::default());
        let urls: Vec<ObservableValue> = found
            .observables
            .into_iter()
            .map(|o| o.value)
            .filter(|value| matches!(value, ObservableValue::Url(_)))
            .collect();
        assert_eq!(
            urls,
            ENCRYPTED_TARGETS.map(|url| ObservableValue::Url(url.to_string()))
        );
        assert!(found.limits_hit.is_empty());
    }
}
