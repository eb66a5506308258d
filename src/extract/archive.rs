//! Members of ZIP archives, read in memory so each member can be hashed.
//!
//! The reader follows the central directory at the end of the archive and
//! falls back to walking the local file headers from the start when the
//! central directory is missing (a truncated attachment). It reads stored
//! (method 0) and deflated (method 8) members. Encrypted members, other
//! compression methods, ZIP64 archives and, in the fallback walk, members
//! whose size is only given after their data are skipped.

use miniz_oxide::inflate::{decompress_to_vec_with_limit, TINFLStatus};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// Size of the end-of-central-directory record without its comment.
const EOCD_LEN: usize = 22;

/// One member read from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub name: String,
    pub data: Vec<u8>,
}

/// Bounds of one archive read. Each limit that is hit is passed to `hit` by
/// its `Limits` field name.
pub(crate) struct Budget<'h> {
    pub max_members: usize,
    pub max_member_bytes: usize,
    /// Uncompressed bytes left for all archives of the message.
    pub bytes_left: usize,
    pub hit: &'h mut dyn FnMut(&'static str),
}

/// Checks for the signature of a ZIP archive (an empty archive included).
pub(crate) fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Returns the members of the archive `bytes` that fit in `budget`.
/// Directories and members that cannot be read are left out.
pub(crate) fn members(bytes: &[u8], budget: &mut Budget<'_>) -> Vec<Member> {
    let entries = central_entries(bytes).unwrap_or_else(|| local_entries(bytes));
    let mut found = Vec::new();
    for (count, entry) in entries.into_iter().enumerate() {
        if count >= budget.max_members {
            (budget.hit)("max_archive_members");
            break;
        }
        if entry.name.ends_with('/') || entry.flags & 1 != 0 {
            continue;
        }
        let Some(data) = read_member(bytes, &entry, budget) else {
            continue;
        };
        if data.len() > budget.bytes_left {
            (budget.hit)("max_archive_bytes");
            break;
        }
        budget.bytes_left -= data.len();
        found.push(Member {
            name: entry.name,
            data,
        });
    }
    found
}

/// A member as its directory entry describes it.
struct Entry {
    name: String,
    flags: u16,
    method: u16,
    compressed_size: usize,
    uncompressed_size: usize,
    /// Offset of the member's local file header.
    local_offset: usize,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([pair[0], pair[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let quad = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))
}

fn name_at(bytes: &[u8], at: usize, len: usize) -> Option<String> {
    // NOTE: names without the UTF-8 flag are CP437 by the specification;
    // they are read as UTF-8 with invalid bytes replaced.
    let raw = bytes.get(at..at.checked_add(len)?)?;
    Some(String::from_utf8_lossy(raw).into_owned())
}

/// Reads the central directory, or returns `None` when there is none.
fn central_entries(bytes: &[u8]) -> Option<Vec<Entry>> {
    let last = bytes.len().checked_sub(EOCD_LEN)?;
    // The record ends with a comment of at most 65535 bytes.
    let first = last.saturating_sub(usize::from(u16::MAX));
    let eocd = (first..=last)
        .rev()
        .find(|&at| u32_at(bytes, at) == Some(END_OF_CENTRAL_DIRECTORY))?;
    let count = usize::from(u16_at(bytes, eocd + 10)?);
    let mut at = usize::try_from(u32_at(bytes, eocd + 16)?).ok()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        if u32_at(bytes, at) != Some(CENTRAL_HEADER) {
            break;
        }
        let name_len = usize::from(u16_at(bytes, at + 28)?);
        let extra_len = usize::from(u16_at(bytes, at + 30)?);
        let comment_len = usize::from(u16_at(bytes, at + 32)?);
        entries.push(Entry {
            flags: u16_at(bytes, at + 8)?,
            method: u16_at(bytes, at + 10)?,
            compressed_size: usize::try_from(u32_at(bytes, at + 20)?).ok()?,
            uncompressed_size: usize::try_from(u32_at(bytes, at + 24)?).ok()?,
            local_offset: usize::try_from(u32_at(bytes, at + 42)?).ok()?,
            name: name_at(bytes, at + 46, name_len)?,
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    if entries.is_empty() && count > 0 {
        return None;
    }
    Some(entries)
}

/// Walks the local file headers from the start of the archive.
fn local_entries(bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while u32_at(bytes, at) == Some(LOCAL_HEADER) {
        let Some(entry) = local_entry(bytes, at) else {
            break;
        };
        // Bit 3: sizes follow the data, so the next header cannot be found.
        let sizes_after_data = entry.flags & 0x08 != 0 && entry.compressed_size == 0;
        let Some(next) =
            local_data_offset(bytes, at).and_then(|data| data.checked_add(entry.compressed_size))
        else {
            break;
        };
        if sizes_after_data {
            break;
        }
        entries.push(entry);
        at = next;
    }
    entries
}

fn local_entry(bytes: &[u8], at: usize) -> Option<Entry> {
    let name_len = usize::from(u16_at(bytes, at + 26)?);
    Some(Entry {
        flags: u16_at(bytes, at + 6)?,
        method: u16_at(bytes, at + 8)?,
        compressed_size: usize::try_from(u32_at(bytes, at + 18)?).ok()?,
        uncompressed_size: usize::try_from(u32_at(bytes, at + 22)?).ok()?,
        local_offset: at,
        name: name_at(bytes, at + 30, name_len)?,
    })
}

/// Returns the offset of the data that follows the local header at `at`.
fn local_data_offset(bytes: &[u8], at: usize) -> Option<usize> {
    if u32_at(bytes, at)? != LOCAL_HEADER {
        return None;
    }
    let name_len = usize::from(u16_at(bytes, at + 26)?);
    let extra_len = usize::from(u16_at(bytes, at + 28)?);
    at.checked_add(30 + name_len + extra_len)
}

fn read_member(bytes: &[u8], entry: &Entry, budget: &mut Budget<'_>) -> Option<Vec<u8>> {
    let start = local_data_offset(bytes, entry.local_offset)?;
    let data = bytes.get(start..start.checked_add(entry.compressed_size)?)?;
    match entry.method {
        0 => {
            if data.len() > budget.max_member_bytes {
                (budget.hit)("max_archive_member_bytes");
                return None;
            }
            Some(data.to_vec())
        }
        8 => {
            if entry.uncompressed_size > budget.max_member_bytes {
                (budget.hit)("max_archive_member_bytes");
                return None;
            }
            match decompress_to_vec_with_limit(data, budget.max_member_bytes) {
                Ok(inflated) => Some(inflated),
                Err(error) if error.status == TINFLStatus::HasMoreOutput => {
                    (budget.hit)("max_archive_member_bytes");
                    None
                }
                Err(error) => {
                    tracing::debug!(member = %entry.name, status = ?error.status, "cannot inflate a ZIP member, not hashed");
                    None
                }
            }
        }
        method => {
            tracing::debug!(member = %entry.name, method, "ZIP compression method not supported, member not hashed");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a ZIP archive of stored members, with a central directory when
    /// `central` is set.
    pub(crate) fn stored_zip(members: &[(&str, &[u8])], central: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut directory = Vec::new();
        for (name, data) in members {
            let offset = out.len() as u32;
            let size = data.len() as u32;
            out.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            directory.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
            directory.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            directory.extend_from_slice(&size.to_le_bytes());
            directory.extend_from_slice(&size.to_le_bytes());
            directory.extend_from_slice(&(name.len() as u16).to_le_bytes());
            directory.extend_from_slice(&[0; 12]);
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(name.as_bytes());
        }
        if central {
            let offset = out.len() as u32;
            let count = members.len() as u16;
            out.extend_from_slice(&directory);
            out.extend_from_slice(&END_OF_CENTRAL_DIRECTORY.to_le_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        out
    }

    fn read(
        bytes: &[u8],
        max_members: usize,
        max_member_bytes: usize,
    ) -> (Vec<Member>, Vec<&'static str>) {
        let mut hits = Vec::new();
        let mut record = |name| hits.push(name);
        let mut budget = Budget {
            max_members,
            max_member_bytes,
            bytes_left: 1 << 20,
            hit: &mut record,
        };
        let found = members(bytes, &mut budget);
        (found, hits)
    }

    #[test]
    fn stored_members_read() {
        let zip = stored_zip(&[("a.txt", b"abc"), ("dir/", b""), ("b.exe", b"MZ")], true);
        let (found, hits) = read(&zip, 10, 100);
        let names: Vec<&str> = found.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.exe"]);
        assert_eq!(found[0].data, b"abc");
        assert!(hits.is_empty());
    }

    #[test]
    fn truncated_archive_walks_local_headers() {
        let zip = stored_zip(&[("a.txt", b"abc"), ("b.txt", b"de")], false);
        let (found, _) = read(&zip, 10, 100);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].data, b"de");
    }

    #[test]
    fn deflated_member_inflated() {
        let payload = b"hello hello hello hello hello";
        let packed = miniz_oxide::deflate::compress_to_vec(payload, 6);
        let mut zip = stored_zip(&[("h.txt", &packed)], true);
        // Method 8 in the local and central headers, and the real size.
        zip[8] = 8;
        let central = zip.len() - EOCD_LEN - (46 + 5);
        zip[central + 10] = 8;
        zip[central + 24..central + 28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let (found, _) = read(&zip, 10, 100);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].data, payload);
    }

    #[test]
    fn limits_named() {
        let zip = stored_zip(&[("a", b"abc"), ("b", b"defgh"), ("c", b"i")], true);
        let (found, hits) = read(&zip, 2, 4);
        assert_eq!(found.len(), 1);
        assert_eq!(hits, ["max_archive_member_bytes", "max_archive_members"]);
    }

    #[test]
    fn garbage_archives_skipped() {
        let inputs: [&[u8]; 4] = [
            b"PK\x03\x04",
            b"PK\x05\x06\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff",
            b"",
        ];
        for input in inputs {
            let (found, _) = read(input, 10, 100);
            assert!(found.is_empty(), "input {input:?}");
        }
    }
}
