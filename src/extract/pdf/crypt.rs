//! Decryption of PDFs that open without a password: the standard security
//! handler (`/Filter /Standard`) with an empty user password. Phishing
//! PDFs use it to hide their links from scanners, because a reader opens
//! such a file without a prompt while every string in it is ciphertext.
//!
//! Read: RC4 (`/V 1` or `2`, `/R 2` or `3`), RC4 or AES-128 crypt filters
//! (`/V 4`, `/R 4`, `/V2` or `/AESV2`), and AES-256 (`/V 5`, `/R 5` or `6`,
//! `/AESV3`). The key derivation follows ISO 32000-1, section 7.6.3
//! (algorithms 1, 2, 4, 5 and 6) and ISO 32000-2, section 7.6.4.3
//! (algorithms 2.A and 2.B). A file with another handler or a user
//! password is not read.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes256};
use md5::{Digest, Md5};
use sha2::{Sha256, Sha384, Sha512};

use super::syntax::{object_header_before, Dictionary, Object, Parser};
use super::window;

/// The padding string that stands for an empty password in algorithm 2
/// (ISO 32000-1, section 7.6.3.3).
pub(super) const PASSWORD_PADDING: [u8; 32] = [
    0x28, 0xbf, 0x4e, 0x5e, 0x4e, 0x75, 0x8a, 0x41, 0x64, 0x00, 0x4e, 0x56, 0xff, 0xfa, 0x01, 0x08,
    0x2e, 0x2e, 0x00, 0xb6, 0xd0, 0x68, 0x3e, 0x80, 0x2f, 0x0c, 0xa9, 0xfe, 0x64, 0x53, 0x69, 0x7a,
];

/// Maximum `/Encrypt` and `/ID` names looked at, from the end of the file.
const MAX_TRAILER_KEYS: usize = 16;

/// Maximum definitions of the encryption dictionary's object looked at.
const MAX_DEFINITIONS: usize = 16;

/// The readability of a file's strings and streams.
pub(super) enum Security {
    /// The file is not encrypted.
    Plain,
    /// The file opens without a password, and this decrypts it.
    Decrypt(Decryptor),
    /// The file needs a password or a handler that is not read.
    Unreadable,
}

/// The encryption method of strings or of streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Identity,
    Rc4,
    AesV2,
    AesV3,
}

/// The file key and the methods of an encrypted PDF.
pub(super) struct Decryptor {
    key: Vec<u8>,
    strings: Method,
    streams: Method,
}

impl Decryptor {
    /// Decrypts a string of object `object` (number and generation).
    pub(super) fn string(&self, object: (u32, u16), data: &[u8]) -> Option<Vec<u8>> {
        self.decrypt(self.strings, object, data)
    }

    /// Decrypts the data of the stream object `object`.
    pub(super) fn stream(&self, object: (u32, u16), data: &[u8]) -> Option<Vec<u8>> {
        self.decrypt(self.streams, object, data)
    }

    fn decrypt(&self, method: Method, object: (u32, u16), data: &[u8]) -> Option<Vec<u8>> {
        match method {
            Method::Identity => Some(data.to_vec()),
            Method::Rc4 => {
                let mut out = data.to_vec();
                rc4(&self.object_key(object, false), &mut out)?;
                Some(out)
            }
            Method::AesV2 => aes_cbc_decrypt(&self.object_key(object, true), data),
            Method::AesV3 => aes_cbc_decrypt(&self.key, data),
        }
    }

    /// Computes the key of one object (algorithm 1). It is the MD5 of the
    /// file key, the low three bytes of the object number, the low two
    /// bytes of the generation and, for AES, `sAlT`. The key is the first
    /// file key length plus 5 bytes of it, at most 16.
    fn object_key(&self, (number, generation): (u32, u16), aes: bool) -> Vec<u8> {
        let mut hasher = Md5::new();
        hasher.update(&self.key);
        hasher.update(&number.to_le_bytes()[..3]);
        hasher.update(generation.to_le_bytes());
        if aes {
            hasher.update(b"sAlT");
        }
        let digest = hasher.finalize();
        digest[..(self.key.len() + 5).min(16)].to_vec()
    }
}

/// Reads the encryption dictionary of the PDF `bytes` and derives the file
/// key for the empty user password.
pub(super) fn security(bytes: &[u8]) -> Security {
    let Some(dictionary) = encryption_dictionary(bytes) else {
        return Security::Plain;
    };
    match decryptor(&dictionary, &first_id(bytes)) {
        Some(decryptor) => Security::Decrypt(decryptor),
        None => Security::Unreadable,
    }
}

/// Finds the value of the last `/Encrypt` entry of a trailer or cross-
/// reference stream dictionary, as a direct dictionary or the object it
/// refers to.
fn encryption_dictionary(bytes: &[u8]) -> Option<Dictionary> {
    trailer_values(bytes, b"/Encrypt").find_map(|value| match value {
        Object::Dictionary(dictionary) => Some(dictionary),
        Object::Reference(number, generation) => object_dictionary(bytes, number, generation),
        _ => None,
    })
}

/// Returns the dictionary of the last definition `N G obj` of an object.
fn object_dictionary(bytes: &[u8], number: u32, generation: u16) -> Option<Dictionary> {
    let header = format!("{number} {generation} obj");
    memchr::memmem::rfind_iter(bytes, header.as_bytes())
        .take(MAX_DEFINITIONS)
        .filter(|&at| at == 0 || !bytes[at - 1].is_ascii_digit())
        .find_map(|at| {
            let start = at + header.len();
            Parser::new(window(bytes, start), start).dictionary()
        })
}

/// Returns the first string of the last `/ID` array, or an empty string.
fn first_id(bytes: &[u8]) -> Vec<u8> {
    trailer_values(bytes, b"/ID")
        .find_map(|value| match value {
            Object::Array(items) => match items.into_iter().next() {
                Some(Object::String(id)) => Some(id),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default()
}

/// Reads the values of the last `MAX_TRAILER_KEYS` occurrences of the name
/// `key` (slash included), from the end of the file. An occurrence that is
/// part of a longer name or has no readable value is skipped.
fn trailer_values<'a>(bytes: &'a [u8], key: &'static [u8]) -> impl Iterator<Item = Object> + 'a {
    memchr::memmem::rfind_iter(bytes, key)
        .take(MAX_TRAILER_KEYS)
        .filter_map(move |at| {
            let mut parser = Parser::new(window(bytes, at), at);
            match parser.object()? {
                Object::Name(name) if name == key[1..] => parser.object(),
                _ => None,
            }
        })
}

/// Derives the decryptor for the empty user password, or returns `None`
/// when the handler, version or password is not one that is read.
fn decryptor(dictionary: &Dictionary, id: &[u8]) -> Option<Decryptor> {
    if dictionary.name(b"Filter") != Some(b"Standard") {
        return None;
    }
    let version = dictionary.integer(b"V")?;
    let revision = dictionary.integer(b"R")?;
    let owner = dictionary.string(b"O")?;
    let user = dictionary.string(b"U")?;
    let (key, strings, streams) = match (version, revision) {
        (1 | 2, 2 | 3) => {
            let bits = if version == 1 {
                40
            } else {
                dictionary.integer(b"Length").unwrap_or(40)
            };
            let key = md5_key(dictionary, revision, key_length(bits)?, owner, user, id)?;
            (key, Method::Rc4, Method::Rc4)
        }
        (4, 4) => {
            let (strings, streams) = crypt_filters(dictionary)?;
            if [strings, streams].contains(&Method::AesV3) {
                return None;
            }
            let bits = dictionary.integer(b"Length").unwrap_or(128);
            let key = md5_key(dictionary, revision, key_length(bits)?, owner, user, id)?;
            (key, strings, streams)
        }
        (5, 5 | 6) => {
            let (strings, streams) = crypt_filters(dictionary)?;
            if [strings, streams]
                .iter()
                .any(|method| !matches!(method, Method::AesV3 | Method::Identity))
            {
                return None;
            }
            let user_key = dictionary.string(b"UE")?;
            (sha_key(revision, user, user_key)?, strings, streams)
        }
        _ => return None,
    };
    Some(Decryptor {
        key,
        strings,
        streams,
    })
}

/// Converts a `/Length` in bits (40 to 128, a multiple of 8) to bytes.
fn key_length(bits: i64) -> Option<usize> {
    ((40..=128).contains(&bits) && bits % 8 == 0).then_some((bits / 8) as usize)
}

/// Reads the methods of strings (`/StrF`) and streams (`/StmF`) in a
/// version 4 or 5 dictionary.
fn crypt_filters(dictionary: &Dictionary) -> Option<(Method, Method)> {
    Some((
        crypt_filter(dictionary, b"StrF")?,
        crypt_filter(dictionary, b"StmF")?,
    ))
}

/// Reads the method of the crypt filter named by `/StmF` or `/StrF` in a
/// version 4 or 5 dictionary. The default and `/Identity` leave the data
/// as it is.
fn crypt_filter(dictionary: &Dictionary, key: &[u8]) -> Option<Method> {
    let name = dictionary.name(key).unwrap_or(b"Identity");
    if name == b"Identity" {
        return Some(Method::Identity);
    }
    let filter = dictionary.dictionary(b"CF")?.dictionary(name)?;
    match filter.name(b"CFM")? {
        b"V2" => Some(Method::Rc4),
        b"AESV2" => Some(Method::AesV2),
        b"AESV3" => Some(Method::AesV3),
        _ => None,
    }
}

/// Computes the file key of revisions 2 to 4 for the empty user password
/// (algorithm 2). It is the MD5 of the padded password, `/O`, `/P` as four
/// little-endian bytes and the first `/ID` string. From revision 3 on, the
/// digest is hashed 50 more times. Returns `None` when the key does not
/// give `/U`, so the user password is not empty.
fn md5_key(
    dictionary: &Dictionary,
    revision: i64,
    length: usize,
    owner: &[u8],
    user: &[u8],
    id: &[u8],
) -> Option<Vec<u8>> {
    // `/P` is a 32-bit signed integer, which some writers give unsigned.
    let permissions = dictionary.integer(b"P")? as u32;
    let mut hasher = Md5::new();
    hasher.update(PASSWORD_PADDING);
    hasher.update(owner.get(..32)?);
    hasher.update(permissions.to_le_bytes());
    hasher.update(id);
    if revision >= 4 && dictionary.get(b"EncryptMetadata") == Some(&Object::Boolean(false)) {
        hasher.update([0xff; 4]);
    }
    let mut digest = hasher.finalize();
    if revision >= 3 {
        for _ in 0..50 {
            digest = Md5::digest(&digest[..length]);
        }
    }
    let key = digest[..length].to_vec();
    check_rc4_user(&key, revision, user, id)?;
    Some(key)
}

/// Checks that `key` is the key of the empty user password by computing
/// `/U` again (algorithms 4 and 5). Returns `None` when it differs.
fn check_rc4_user(key: &[u8], revision: i64, user: &[u8], id: &[u8]) -> Option<()> {
    if revision == 2 {
        let mut expected = PASSWORD_PADDING;
        rc4(key, &mut expected)?;
        return (user.get(..32)? == expected).then_some(());
    }
    let mut hasher = Md5::new();
    hasher.update(PASSWORD_PADDING);
    hasher.update(id);
    let mut expected: [u8; 16] = hasher.finalize().into();
    for round in 0..20u8 {
        let round_key: Vec<u8> = key.iter().map(|byte| byte ^ round).collect();
        rc4(&round_key, &mut expected)?;
    }
    (user.get(..16)? == expected).then_some(())
}

/// Derives the file key of revisions 5 and 6 for the empty user password
/// (algorithm 2.A). `/U` contains a 32-byte hash, an 8-byte validation
/// salt and an 8-byte key salt. `/UE` contains the file key, encrypted
/// with the hash of the key salt. Returns `None` when the password is not
/// empty.
fn sha_key(revision: i64, user: &[u8], user_key: &[u8]) -> Option<Vec<u8>> {
    let hash = |salt: &[u8]| -> [u8; 32] {
        if revision == 5 {
            Sha256::digest(salt).into()
        } else {
            hardened_hash(b"", salt, b"")
        }
    };
    let validation_salt = user.get(32..40)?;
    let key_salt = user.get(40..48)?;
    if hash(validation_salt)[..] != *user.get(..32)? {
        return None;
    }
    let intermediate = hash(key_salt);
    let mut key = user_key.get(..32)?.to_vec();
    cbc_decrypt::<Aes256>(&intermediate, &[0; 16], &mut key)?;
    Some(key)
}

/// Computes the hash of revision 6 (algorithm 2.B). Each round encrypts 64
/// copies of password, hash and user data with AES-128-CBC under the hash,
/// then hashes the result with SHA-256, -384 or -512, chosen by the sum of
/// its first 16 bytes modulo 3. It runs at least 64 rounds and stops once
/// the last byte of the encrypted data is at most the round count minus
/// 32, so after 287 rounds at most.
pub(super) fn hardened_hash(password: &[u8], salt: &[u8], user_data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(password);
    hasher.update(salt);
    hasher.update(user_data);
    let mut hash: Vec<u8> = hasher.finalize().to_vec();
    let mut rounds = 0usize;
    loop {
        let mut data = Vec::with_capacity(64 * (password.len() + hash.len() + user_data.len()));
        for _ in 0..64 {
            data.extend_from_slice(password);
            data.extend_from_slice(&hash);
            data.extend_from_slice(user_data);
        }
        aes128_cbc_encrypt(&hash[..16], &hash[16..32], &mut data);
        let selector: u32 = data[..16].iter().map(|&byte| u32::from(byte)).sum();
        hash = match selector % 3 {
            0 => Sha256::digest(&data).to_vec(),
            1 => Sha384::digest(&data).to_vec(),
            _ => Sha512::digest(&data).to_vec(),
        };
        rounds += 1;
        let last = usize::from(*data.last().unwrap_or(&0));
        if rounds >= 64 && last + 32 <= rounds {
            break;
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&hash[..32]);
    out
}

/// Encrypts `data`, whose length is a multiple of 16, in place with
/// AES-128-CBC and no padding.
fn aes128_cbc_encrypt(key: &[u8], iv: &[u8], data: &mut [u8]) {
    let mut encryptor =
        cbc::Encryptor::<Aes128>::new(GenericArray::from_slice(key), GenericArray::from_slice(iv));
    for block in data.chunks_exact_mut(16) {
        encryptor.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
}

/// Decrypts AES-CBC data whose first 16 bytes are the initialization
/// vector, with a 16- or 32-byte key. Bytes past the last whole block are
/// ignored, and the PKCS #7 padding is removed when it is valid.
fn aes_cbc_decrypt(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let (iv, rest) = data.split_at_checked(16)?;
    let mut out = rest[..rest.len() / 16 * 16].to_vec();
    match key.len() {
        16 => cbc_decrypt::<Aes128>(key, iv, &mut out)?,
        32 => cbc_decrypt::<Aes256>(key, iv, &mut out)?,
        _ => return None,
    }
    if let Some(&padding) = out.last() {
        let padding = usize::from(padding);
        let valid = (1..=16).contains(&padding)
            && padding <= out.len()
            && out[out.len() - padding..]
                .iter()
                .all(|&byte| usize::from(byte) == padding);
        if valid {
            out.truncate(out.len() - padding);
        }
    }
    Some(out)
}

/// Decrypts the whole blocks of `data` in place with `Cipher` in CBC mode.
/// Returns `None` when the key or vector length does not fit the cipher.
fn cbc_decrypt<Cipher>(key: &[u8], iv: &[u8], data: &mut [u8]) -> Option<()>
where
    cbc::Decryptor<Cipher>: KeyIvInit + BlockDecryptMut,
    Cipher: aes::cipher::BlockCipher + aes::cipher::BlockDecrypt,
{
    let mut decryptor = cbc::Decryptor::<Cipher>::new_from_slices(key, iv).ok()?;
    for block in data.chunks_exact_mut(16) {
        decryptor.decrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    Some(())
}

/// Applies the RC4 key stream of `key` (5 to 16 bytes) to `data`, which
/// both encrypts and decrypts. Returns `None` for another key length.
pub(super) fn rc4(key: &[u8], data: &mut [u8]) -> Option<()> {
    use rc4::consts::{U10, U11, U12, U13, U14, U15, U16, U5, U6, U7, U8, U9};
    use rc4::Rc4;

    macro_rules! apply {
        ($($length:literal => $size:ty),*) => {
            match key.len() {
                $($length => Rc4::<$size>::new_from_slice(key).ok()?.apply_keystream(data),)*
                _ => return None,
            }
        };
    }
    apply!(5 => U5, 6 => U6, 7 => U7, 8 => U8, 9 => U9, 10 => U10, 11 => U11,
        12 => U12, 13 => U13, 14 => U14, 15 => U15, 16 => U16);
    Some(())
}

/// Follows the `N G obj` headers and `endobj` keywords of a file from its
/// start, so that finding the object around each string of a file takes
/// one pass over it.
#[derive(Default)]
pub(super) struct ObjectTracker {
    /// Offset up to which the file was read.
    cursor: usize,
    /// The object open at `cursor`.
    current: Option<(u32, u16)>,
}

impl ObjectTracker {
    /// Returns the number and generation of the object whose body contains
    /// offset `at`, or `None` outside any object, as in a trailer. Offsets
    /// must not decrease from one call to the next: a smaller one gets the
    /// object at the largest offset so far.
    pub(super) fn object_at(&mut self, bytes: &[u8], at: usize) -> Option<(u32, u16)> {
        if let Some(gap) = bytes.get(self.cursor..at) {
            for keyword in memchr::memmem::find_iter(gap, b"obj") {
                let keyword = self.cursor + keyword;
                if bytes.get(keyword.saturating_sub(3)..keyword) == Some(b"end") {
                    self.current = None;
                } else if let Some(object) = object_header_before(bytes, keyword) {
                    self.current = Some(object);
                }
            }
            self.cursor = at;
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::super::find_last;
    use super::*;

    #[test]
    fn object_headers_followed() {
        let file = b"%PDF-1.7\n12 0 obj\n<< /URI (a) >>\nendobj\n  7 3 obj << /URI (b) /T (x obj) >> endobj\n\
            trailer << /URI (c) >>\n";
        let mut tracker = ObjectTracker::default();
        let offset = |text: &[u8]| find_last(file, text).unwrap();
        assert_eq!(tracker.object_at(file, offset(b"(a)")), Some((12, 0)));
        assert_eq!(tracker.object_at(file, offset(b"(b)")), Some((7, 3)));
        assert_eq!(tracker.object_at(file, offset(b"(c)")), None);
        assert_eq!(tracker.object_at(file, offset(b"(a)")), None);
    }

    #[test]
    fn rc4_key_lengths() {
        let mut data = *b"plain";
        assert_eq!(rc4(&[1; 4], &mut data), None);
        assert_eq!(rc4(&[1; 17], &mut data), None);
        assert_eq!(rc4(&[1; 5], &mut data), Some(()));
        assert_ne!(&data, b"plain");
        assert_eq!(rc4(&[1; 5], &mut data), Some(()));
        assert_eq!(&data, b"plain");
    }

    #[test]
    fn aes_data_damaged() {
        let key = [7u8; 16];
        assert_eq!(aes_cbc_decrypt(&key, &[0; 15]), None);
        assert_eq!(aes_cbc_decrypt(&key, &[0; 16]), Some(Vec::new()));
        assert_eq!(aes_cbc_decrypt(&[7u8; 24], &[0; 32]), None);
        // A part block at the end is ignored, and invalid padding kept.
        assert_eq!(
            aes_cbc_decrypt(&key, &[0; 16 + 16 + 5]).map(|out| out.len()),
            Some(16)
        );
    }
}
