//! Stream filters that the scanner decodes (ISO 32000-1, section 7.4):
//! `/FlateDecode`, `/ASCIIHexDecode` and `/ASCII85Decode`, alone or in a
//! chain. A stream cut short or damaged gives what could be decoded, as
//! PDF readers do.

use std::borrow::Cow;

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::syntax::{hex_digits, is_white, Dictionary, Object};
use super::Budget;

/// Maximum filters in one chain.
const MAX_FILTERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Filter {
    Flate,
    AsciiHex,
    Ascii85,
}

impl Filter {
    /// Reads a filter name, in full or abbreviated as in inline images.
    fn from_name(name: &[u8]) -> Option<Filter> {
        match name {
            b"FlateDecode" | b"Fl" => Some(Filter::Flate),
            b"ASCIIHexDecode" | b"AHx" => Some(Filter::AsciiHex),
            b"ASCII85Decode" | b"A85" => Some(Filter::Ascii85),
            _ => None,
        }
    }
}

/// Returns the filters of a stream dictionary in the order they decode.
/// Returns `None` when a filter is not one the scanner decodes (LZW, DCT,
/// Crypt, ...), when the chain is longer than `MAX_FILTERS`, and when there
/// is no filter, because such a stream was already read as written.
pub(super) fn chain(dictionary: &Dictionary) -> Option<Vec<Filter>> {
    let filters = match dictionary.get(b"Filter")? {
        Object::Name(name) => vec![Filter::from_name(name)?],
        Object::Array(names) if names.len() <= MAX_FILTERS => names
            .iter()
            .map(|object| match object {
                Object::Name(name) => Filter::from_name(name),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    (!filters.is_empty()).then_some(filters)
}

/// Decodes `data` through `filters` within `budget`. The output of every
/// filter counts against the budget, intermediate results included.
/// Returns `None` when the budget was used up before a filter ran.
pub(super) fn decode(filters: &[Filter], data: &[u8], budget: &mut Budget<'_>) -> Option<Vec<u8>> {
    let mut current = Cow::Borrowed(data);
    for filter in filters {
        if budget.bytes_left == 0 {
            (budget.hit)("max_archive_bytes");
            return None;
        }
        let limit = budget.max_stream_bytes.min(budget.bytes_left);
        let (out, truncated) = match filter {
            Filter::Flate => inflate(&current, limit),
            Filter::AsciiHex => ascii_hex(&current, limit),
            Filter::Ascii85 => ascii85(&current, limit),
        };
        if truncated {
            (budget.hit)(if limit == budget.max_stream_bytes {
                "max_archive_member_bytes"
            } else {
                "max_archive_bytes"
            });
        }
        budget.bytes_left -= out.len();
        current = Cow::Owned(out);
    }
    Some(current.into_owned())
}

/// Decompresses zlib data into at most `limit` bytes. Returns the output
/// and whether it was cut at the limit. Data cut short or damaged gives
/// the bytes decoded before the fault.
fn inflate(data: &[u8], limit: usize) -> (Vec<u8>, bool) {
    // The output is tracked here because the error of
    // `decompress_to_vec_zlib_with_limit` carries the whole zero-filled
    // buffer, not only the bytes written.
    let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
        | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut decompressor = Box::<DecompressorOxide>::default();
    let mut out = vec![0; data.len().saturating_mul(2).min(limit)];
    let mut input = data;
    let mut written = 0;
    loop {
        let (status, read, wrote) = decompress(&mut decompressor, input, &mut out, written, flags);
        written += wrote;
        input = input.get(read..).unwrap_or_default();
        let full = status == TINFLStatus::HasMoreOutput;
        if !full || out.len() >= limit {
            out.truncate(written);
            return (out, full);
        }
        // The buffer at least doubles each round up to `limit`, where the
        // loop ends.
        let grown = out.len().saturating_mul(2).max(64).min(limit);
        out.resize(grown, 0);
    }
}

/// Decodes hexadecimal digits up to the `>` end marker into at most
/// `limit` bytes. White space is skipped, and a missing last digit counts
/// as 0. Decoding stops at the first byte that is not a digit.
fn ascii_hex(data: &[u8], limit: usize) -> (Vec<u8>, bool) {
    let (out, _, truncated) = hex_digits(data, limit);
    (out, truncated)
}

/// Decodes base-85 groups up to the `~>` end marker into at most `limit`
/// bytes. `z` stands for four zero bytes, white space is skipped, and a
/// last group of 2 to 4 characters gives 1 to 3 bytes. Decoding stops at
/// the first other byte and at a group above 2^32 - 1, without the group
/// being read.
fn ascii85(data: &[u8], limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut value: u64 = 0;
    let mut count = 0;
    for &byte in data {
        if is_white(byte) {
            continue;
        }
        let group = match byte {
            b'z' if count == 0 => Some([0u8; 4]),
            b'!'..=b'u' => {
                value = value * 85 + u64::from(byte - b'!');
                count += 1;
                if count < 5 {
                    None
                } else {
                    let Ok(word) = u32::try_from(value) else {
                        return (out, false);
                    };
                    value = 0;
                    count = 0;
                    Some(word.to_be_bytes())
                }
            }
            b'~' => break,
            // A damaged stream: the group read so far is dropped.
            _ => return (out, false),
        };
        if let Some(group) = group {
            if out.len() + 4 > limit {
                out.extend_from_slice(&group[..limit - out.len()]);
                return (out, true);
            }
            out.extend_from_slice(&group);
        }
    }
    if count >= 2 {
        for _ in count..5 {
            value = value * 85 + 84;
        }
        if let Ok(word) = u32::try_from(value) {
            let tail = &word.to_be_bytes()[..count - 1];
            let room = limit - out.len();
            if tail.len() > room {
                out.extend_from_slice(&tail[..room]);
                return (out, true);
            }
            out.extend_from_slice(tail);
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::super::syntax::Parser;
    use super::*;

    #[test]
    fn ascii_hex_decoding() {
        assert_eq!(ascii_hex(b"68 74\n7470>", 100), (b"http".to_vec(), false));
        assert_eq!(ascii_hex(b"414", 100), (vec![0x41, 0x40], false));
        assert_eq!(ascii_hex(b"41zz42", 100), (vec![0x41], false));
        assert_eq!(ascii_hex(b"414243", 2), (vec![0x41, 0x42], true));
        assert_eq!(ascii_hex(b"41424", 2), (vec![0x41, 0x42], true));
        assert_eq!(ascii_hex(b"4142", 2), (vec![0x41, 0x42], false));
    }

    #[test]
    fn ascii85_decoding() {
        // "https://" is `BQS?8F#ks-` and "http" is `BQS?8`.
        assert_eq!(ascii85(b"BQS?8F#ks-~>", 100), (b"https://".to_vec(), false));
        assert_eq!(ascii85(b"BQS?\n8 F#k~>", 100), (b"https:".to_vec(), false));
        assert_eq!(ascii85(b"zBQS?8", 100), (b"\0\0\0\0http".to_vec(), false));
        assert_eq!(ascii85(b"BQS?8F#ks-", 6), (b"https:".to_vec(), true));
        assert_eq!(ascii85(b"BQS?8F#k", 5), (b"https".to_vec(), true));
        // A group above 2^32 - 1, a `z` inside a group, a lone last digit.
        assert_eq!(ascii85(b"BQS?8uuuuu", 100), (b"http".to_vec(), false));
        assert_eq!(ascii85(b"BQzS?8", 100), (Vec::new(), false));
        assert_eq!(ascii85(b"BQS?8F~>", 100), (b"http".to_vec(), false));
    }

    #[test]
    fn inflate_cut_short() {
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|n| n.to_string().into_bytes())
            .collect();
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&text, 6);
        let cut = &packed[..packed.len() / 2];
        let (out, truncated) = inflate(cut, 1 << 20);
        assert!(!truncated);
        assert!(!out.is_empty());
        assert!(text.starts_with(&out), "{} bytes, not a prefix", out.len());
        // A limit that the first output buffer already reaches.
        let (out, truncated) = inflate(cut, cut.len() * 2);
        assert!(!truncated);
        assert!(text.starts_with(&out), "{} bytes, not a prefix", out.len());
    }

    #[test]
    fn filter_chains_read() {
        let chain_of = |filter: &str| {
            let text = format!("<< /Filter {filter} >>");
            let dictionary = Parser::new(text.as_bytes(), 0).dictionary().unwrap();
            chain(&dictionary)
        };
        assert_eq!(chain_of("/FlateDecode"), Some(vec![Filter::Flate]));
        assert_eq!(
            chain_of("[/A85 /Fl]"),
            Some(vec![Filter::Ascii85, Filter::Flate])
        );
        assert_eq!(chain_of("[/ASCIIHexDecode]"), Some(vec![Filter::AsciiHex]));
        assert_eq!(chain_of("[/AHx /LZWDecode]"), None);
        assert_eq!(chain_of("/DCTDecode"), None);
        assert_eq!(chain_of("[]"), None);
        assert_eq!(chain_of("[/Fl /Fl /Fl /Fl /Fl]"), None);
        assert_eq!(chain_of("(FlateDecode)"), None);
    }
}
