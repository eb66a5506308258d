//! Transfer decodings done again from a part's raw body, where the way mail
//! clients decode differs from mail-parser's.

/// Marks a byte outside the base64 alphabet in [`BASE64_VALUES`].
const NOT_BASE64: u8 = 0xff;

/// The 6-bit value of each base64 alphabet byte, [`NOT_BASE64`] for the
/// rest (`=` included).
const BASE64_VALUES: [u8; 256] = {
    let mut table = [NOT_BASE64; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut index = 0;
    while index < alphabet.len() {
        table[alphabet[index] as usize] = index as u8;
        index += 1;
    }
    table
};

/// Decodes base64 as Python's `email` package and common mail clients do:
/// characters outside the alphabet (white space, stray symbols) are
/// skipped, missing padding is tolerated, and padding that completes a
/// group of 4 ends the data. A last group of 1 character is dropped.
pub(crate) fn decode_base64_lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    let mut group = [0u8; 4];
    let mut filled = 0;
    let mut pads = 0;
    let mut position = 0;
    while position < raw.len() {
        // Fast path: four alphabet bytes at a group boundary, which is most
        // of a body written in lines of 76 characters.
        if filled == 0 {
            while let Some(&[a, b, c, d]) = raw.get(position..position + 4) {
                let values = [a, b, c, d].map(|byte| BASE64_VALUES[usize::from(byte)]);
                if values.contains(&NOT_BASE64) {
                    break;
                }
                out.push((values[0] << 2) | (values[1] >> 4));
                out.push((values[1] << 4) | (values[2] >> 2));
                out.push((values[2] << 6) | values[3]);
                position += 4;
            }
            if position >= raw.len() {
                break;
            }
        }
        let byte = raw[position];
        position += 1;
        let value = BASE64_VALUES[usize::from(byte)];
        if value == NOT_BASE64 {
            if byte == b'=' && filled >= 2 {
                pads += 1;
                if filled + pads >= 4 {
                    break;
                }
            }
            continue;
        }
        pads = 0;
        group[filled] = value;
        filled += 1;
        if filled == 4 {
            out.push((group[0] << 2) | (group[1] >> 4));
            out.push((group[1] << 4) | (group[2] >> 2));
            out.push((group[2] << 6) | group[3]);
            filled = 0;
        }
    }
    if filled >= 2 {
        out.push((group[0] << 2) | (group[1] >> 4));
    }
    if filled == 3 {
        out.push((group[1] << 4) | (group[2] >> 2));
    }
    out
}

/// Tells whether `raw` is base64 that mail-parser and
/// [`decode_base64_lenient`] decode to the same bytes: alphabet characters
/// and white space, then only padding and white space, with a last group of
/// 2 or 3 characters padded.
pub(crate) fn is_clean_base64(raw: &[u8]) -> bool {
    let mut symbols = 0usize;
    let mut position = 0;
    while let Some(&byte) = raw.get(position) {
        if BASE64_VALUES[usize::from(byte)] != NOT_BASE64 {
            symbols += 1;
        } else if byte == b'=' {
            break;
        } else if !matches!(byte, b'\r' | b'\n' | b' ' | b'\t') {
            return false;
        }
        position += 1;
    }
    let mut pads = 0;
    for &byte in &raw[position..] {
        match byte {
            b'=' => pads += 1,
            b'\r' | b'\n' | b' ' | b'\t' => {}
            _ => return false,
        }
    }
    // mail-parser drops a last group of 2 or 3 characters unless padding
    // follows it; the lenient decoder keeps its bytes.
    match symbols % 4 {
        0 => true,
        2 | 3 => pads > 0,
        _ => false,
    }
}

/// Decodes a uuencoded body (`begin 644 name`, encoded lines, `end`), as
/// sent with `Content-Transfer-Encoding: x-uuencode`. Lines before `begin`
/// are skipped, and a line's length character gives the number of bytes it
/// carries. Returns `None` when there is no `begin` line.
pub(crate) fn decode_uuencode(raw: &[u8]) -> Option<Vec<u8>> {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    lines.find(|line| line.starts_with(b"begin "))?;
    let mut out = Vec::new();
    for line in lines {
        if line == b"end" {
            break;
        }
        let Some((&length, data)) = line.split_first() else {
            continue;
        };
        let count = usize::from(length.wrapping_sub(b' ') & 0x3f);
        if count == 0 {
            continue;
        }
        let mut decoded = Vec::with_capacity(count + 2);
        for group in data.chunks(4) {
            let mut values = [0u8; 4];
            for (slot, &byte) in values.iter_mut().zip(group) {
                *slot = byte.wrapping_sub(b' ') & 0x3f;
            }
            decoded.push((values[0] << 2) | (values[1] >> 4));
            decoded.push((values[1] << 4) | (values[2] >> 2));
            decoded.push((values[2] << 6) | values[3]);
        }
        decoded.truncate(count);
        out.extend_from_slice(&decoded);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lenient_cases() {
        assert_eq!(decode_base64_lenient(b"YWJjZA"), b"abcd");
        assert_eq!(decode_base64_lenient(b"YW Jj\r\nZA=="), b"abcd");
        assert_eq!(decode_base64_lenient(b"YQ==YQ=="), b"a");
        assert_eq!(decode_base64_lenient(b"YW=Jj"), b"abc");
        assert_eq!(decode_base64_lenient(b"YWJjZ"), b"abc");
        assert_eq!(decode_base64_lenient(b"!*\x00"), b"");
    }

    /// Decodes byte by byte, as the code before the fast path did, to
    /// check that both give the same bytes.
    fn reference_decode(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut group = [0u8; 4];
        let mut filled = 0;
        let mut pads = 0;
        for &byte in raw {
            let value = match byte {
                b'A'..=b'Z' => byte - b'A',
                b'a'..=b'z' => byte - b'a' + 26,
                b'0'..=b'9' => byte - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if filled >= 2 => {
                    pads += 1;
                    if filled + pads >= 4 {
                        break;
                    }
                    continue;
                }
                _ => continue,
            };
            pads = 0;
            group[filled] = value;
            filled += 1;
            if filled == 4 {
                out.push((group[0] << 2) | (group[1] >> 4));
                out.push((group[1] << 4) | (group[2] >> 2));
                out.push((group[2] << 6) | group[3]);
                filled = 0;
            }
        }
        if filled >= 2 {
            out.push((group[0] << 2) | (group[1] >> 4));
        }
        if filled == 3 {
            out.push((group[1] << 4) | (group[2] >> 2));
        }
        out
    }

    #[test]
    fn base64_fast_path_matches_reference() {
        // Inputs mixing alphabet bytes with line breaks, spaces, stray
        // symbols and padding at every offset, from a fixed xorshift.
        let pieces: &[&[u8]] = &[
            b"QUJD", b"ZGVm", b"\r\n", b" ", b"=", b"==", b"Zg", b"!", b"x", b"\t",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            let mut input = Vec::new();
            for _ in 0..(state % 40) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            assert_eq!(
                decode_base64_lenient(&input),
                reference_decode(&input),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn uuencode_cases() {
        // "golden uu\n" encoded by Python's binascii.b2a_uu.
        let body = b"begin 644 a.txt\r\n*9V]L9&5N('5U\"@``\r\n`\r\nend\r\n";
        assert_eq!(decode_uuencode(body), Some(b"golden uu\n".to_vec()));
        assert_eq!(decode_uuencode(b"no begin line"), None);
        let garbage = decode_uuencode(b"begin 644 x\n\xff\xfe\nend");
        assert_eq!(garbage.map(|bytes| bytes.len()), Some(3));
    }
}
