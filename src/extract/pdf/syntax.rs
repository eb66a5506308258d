//! Direct objects of PDF syntax (ISO 32000-1, section 7.3), read from a
//! byte offset: names, numbers, strings, arrays, dictionaries and
//! references. The scanner reads stream and encryption dictionaries with
//! it. No reference is resolved and no cross-reference table is read.

/// Maximum decoded bytes of a string. Longer strings are not read.
pub(super) const MAX_STRING_LEN: usize = 8 * 1024 + 32;

/// Maximum bytes of a literal string that are read. An escape takes up to
/// four bytes for one byte of the string.
const MAX_LITERAL_SCAN: usize = 4 * MAX_STRING_LEN;

/// Maximum nesting of arrays and dictionaries.
const MAX_DEPTH: usize = 16;

/// Maximum objects read by one parser, nested ones included.
const MAX_OBJECTS: usize = 4096;

/// A direct object. Objects the scanner never looks at (booleans aside,
/// `null` and operators) are `Other`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Object {
    Name(Vec<u8>),
    Integer(i64),
    Real,
    Boolean(bool),
    String(Vec<u8>),
    Reference(u32, u16),
    Array(Vec<Object>),
    Dictionary(Dictionary),
    Other,
}

/// The entries of a dictionary, keys without their slash, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Dictionary {
    entries: Vec<(Vec<u8>, Object)>,
}

impl Dictionary {
    /// Returns the value of the first entry named `key`.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Object> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    pub(super) fn name(&self, key: &[u8]) -> Option<&[u8]> {
        match self.get(key)? {
            Object::Name(name) => Some(name),
            _ => None,
        }
    }

    pub(super) fn integer(&self, key: &[u8]) -> Option<i64> {
        match self.get(key)? {
            Object::Integer(value) => Some(*value),
            _ => None,
        }
    }

    pub(super) fn string(&self, key: &[u8]) -> Option<&[u8]> {
        match self.get(key)? {
            Object::String(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub(super) fn dictionary(&self, key: &[u8]) -> Option<&Dictionary> {
        match self.get(key)? {
            Object::Dictionary(dictionary) => Some(dictionary),
            _ => None,
        }
    }
}

/// Reads direct objects from `bytes`, starting at an offset.
pub(super) struct Parser<'a> {
    bytes: &'a [u8],
    position: usize,
    objects_left: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(bytes: &'a [u8], position: usize) -> Self {
        Parser {
            bytes,
            position,
            objects_left: MAX_OBJECTS,
        }
    }

    /// Returns the offset of the first byte not read yet.
    pub(super) fn position(&self) -> usize {
        self.position
    }

    /// Skips white space and comments.
    pub(super) fn skip_white(&mut self) {
        while let Some(&byte) = self.bytes.get(self.position) {
            if is_white(byte) {
                self.position += 1;
            } else if byte == b'%' {
                while self
                    .bytes
                    .get(self.position)
                    .is_some_and(|b| *b != b'\r' && *b != b'\n')
                {
                    self.position += 1;
                }
            } else {
                break;
            }
        }
    }

    /// Reads the object at the current offset. Returns `None` on damaged
    /// syntax, at the end of the bytes and past the nesting or object
    /// limits.
    pub(super) fn object(&mut self) -> Option<Object> {
        self.object_at_depth(0)
    }

    /// Reads the dictionary at the current offset.
    pub(super) fn dictionary(&mut self) -> Option<Dictionary> {
        match self.object()? {
            Object::Dictionary(dictionary) => Some(dictionary),
            _ => None,
        }
    }

    fn object_at_depth(&mut self, depth: usize) -> Option<Object> {
        if depth > MAX_DEPTH || self.objects_left == 0 {
            return None;
        }
        self.objects_left -= 1;
        self.skip_white();
        let rest = self.bytes.get(self.position..)?;
        match *rest.first()? {
            b'/' => {
                let (name, used) = name(rest.get(1..)?);
                self.position += 1 + used;
                Some(Object::Name(name))
            }
            b'(' => {
                let (bytes, used) = literal_string(rest.get(1..)?)?;
                self.position += 1 + used;
                Some(Object::String(bytes))
            }
            b'<' if rest.get(1) == Some(&b'<') => {
                self.position += 2;
                self.dictionary_body(depth)
            }
            b'<' => {
                let (bytes, used) = hex_string(rest.get(1..)?)?;
                self.position += 1 + used;
                Some(Object::String(bytes))
            }
            b'[' => {
                self.position += 1;
                self.array_body(depth)
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => Some(self.number_or_reference()),
            byte if is_delimiter(byte) => None,
            _ => {
                let used = regular_run(rest);
                self.position += used;
                Some(match rest.get(..used)? {
                    b"true" => Object::Boolean(true),
                    b"false" => Object::Boolean(false),
                    _ => Object::Other,
                })
            }
        }
    }

    fn dictionary_body(&mut self, depth: usize) -> Option<Object> {
        let mut entries = Vec::new();
        loop {
            self.skip_white();
            let rest = self.bytes.get(self.position..)?;
            if rest.starts_with(b">>") {
                self.position += 2;
                return Some(Object::Dictionary(Dictionary { entries }));
            }
            let Object::Name(key) = self.object_at_depth(depth + 1)? else {
                return None;
            };
            let value = self.object_at_depth(depth + 1)?;
            entries.push((key, value));
        }
    }

    fn array_body(&mut self, depth: usize) -> Option<Object> {
        let mut items = Vec::new();
        loop {
            self.skip_white();
            if *self.bytes.get(self.position)? == b']' {
                self.position += 1;
                return Some(Object::Array(items));
            }
            items.push(self.object_at_depth(depth + 1)?);
        }
    }

    /// Reads a number, or a reference `N G R` when the number starts one.
    fn number_or_reference(&mut self) -> Object {
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        let used = regular_run(rest).max(1);
        self.position += used;
        let text = rest.get(..used).unwrap_or_default();
        let Some(value) = std::str::from_utf8(text)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
        else {
            return Object::Real;
        };
        let after_number = self.position;
        if let Some(reference) = self.reference_rest(value) {
            return reference;
        }
        self.position = after_number;
        Object::Integer(value)
    }

    /// Reads ` G R` after the object number `number`, if it is there.
    fn reference_rest(&mut self, number: i64) -> Option<Object> {
        let number = u32::try_from(number).ok()?;
        self.skip_white();
        let rest = self.bytes.get(self.position..)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let generation = std::str::from_utf8(rest.get(..digits)?)
            .ok()?
            .parse::<u16>()
            .ok()?;
        self.position += digits;
        self.skip_white();
        let rest = self.bytes.get(self.position..)?;
        if rest.first() != Some(&b'R') || rest.get(1).is_some_and(|b| !is_ending(*b)) {
            return None;
        }
        self.position += 1;
        Some(Object::Reference(number, generation))
    }
}

/// Decodes a name whose slash was just read, with its `#xx` escapes.
/// Returns the name and the bytes it took.
fn name(bytes: &[u8]) -> (Vec<u8>, usize) {
    let used = regular_run(bytes);
    let raw = &bytes[..used];
    let mut out = Vec::with_capacity(used);
    let mut position = 0;
    while let Some(&byte) = raw.get(position) {
        let escaped = (byte == b'#')
            .then(|| raw.get(position + 1..position + 3))
            .flatten()
            .and_then(|digits| {
                let mut value = [0u8];
                hex::decode_to_slice(digits, &mut value).ok()?;
                Some(value[0])
            });
        match escaped {
            Some(value) => {
                out.push(value);
                position += 3;
            }
            None => {
                out.push(byte);
                position += 1;
            }
        }
    }
    (out, used)
}

/// Decodes a literal string whose opening parenthesis was just read.
/// Returns the string and the bytes it took, closing parenthesis included.
pub(super) fn literal_string(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
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
                    return (out.len() <= MAX_STRING_LEN).then_some((out, position));
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
/// space is ignored and a missing last digit counts as 0. Returns the
/// string and the bytes it took, closing `>` included.
pub(super) fn hex_string(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let scan = &bytes[..bytes.len().min(MAX_STRING_LEN * 2 + 64)];
    let (out, used, _) = hex_digits(scan, usize::MAX);
    (scan.get(used) == Some(&b'>')).then_some((out, used + 1))
}

/// Decodes pairs of hexadecimal digits into at most `limit` bytes, up to
/// the first byte that is neither a digit nor white space. A missing last
/// digit counts as 0. Returns the bytes, the offset where decoding stopped
/// and whether the output was cut at `limit`.
pub(super) fn hex_digits(data: &[u8], limit: usize) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut high: Option<u8> = None;
    let mut used = data.len();
    for (position, &byte) in data.iter().enumerate() {
        if is_white(byte) {
            continue;
        }
        let Some(digit) = (byte as char).to_digit(16) else {
            used = position;
            break;
        };
        let digit = digit as u8;
        match high.take() {
            Some(value) => {
                if out.len() == limit {
                    return (out, position, true);
                }
                out.push(value << 4 | digit);
            }
            None => high = Some(digit),
        }
    }
    if let Some(value) = high {
        if out.len() == limit {
            return (out, used, true);
        }
        out.push(value << 4);
    }
    (out, used, false)
}

/// Reads the `N G` before the `obj` keyword at `keyword`.
pub(super) fn object_header_before(bytes: &[u8], keyword: usize) -> Option<(u32, u16)> {
    let head = bytes.get(keyword.saturating_sub(32)..keyword)?;
    if !head.last().is_some_and(|b| is_white(*b)) {
        return None;
    }
    let mut tokens = head
        .split(|b| is_white(*b))
        .filter(|token| !token.is_empty())
        .rev();
    let generation = tokens.next()?;
    let number = tokens.next()?;
    let all_digits = |token: &[u8]| !token.is_empty() && token.iter().all(u8::is_ascii_digit);
    if !all_digits(generation) || !all_digits(number) {
        return None;
    }
    let generation = std::str::from_utf8(generation).ok()?.parse().ok()?;
    let number = std::str::from_utf8(number).ok()?.parse().ok()?;
    Some((number, generation))
}

/// Counts the regular characters (neither white space nor delimiters) at
/// the start of `bytes`.
fn regular_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| !is_ending(**b)).count()
}

/// Tells whether `byte` ends a name, number or keyword.
fn is_ending(byte: u8) -> bool {
    is_white(byte) || is_delimiter(byte)
}

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// Counts the white space bytes at the start of `bytes`.
pub(super) fn white_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| is_white(**b)).count()
}

/// Tells whether `byte` is PDF white space: NUL, tab, line feed, form feed,
/// carriage return or space.
pub(super) fn is_white(byte: u8) -> bool {
    matches!(byte, 0 | b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Object> {
        Parser::new(text.as_bytes(), 0).object()
    }

    #[test]
    fn dictionary_entries() {
        let text = "<< /Type /ObjStm /N 3 /Filter [/A85 /Fl] /Encrypt 12 0 R \
                    /ID [<0A1b> (x\\)y)] /Flag false /Ratio 1.5 /Na#6De /F%c\n/G 1 /Sign#+1 /Na#-1 >>";
        let Some(Object::Dictionary(dictionary)) = parse(text) else {
            panic!("no dictionary in {text}");
        };
        assert_eq!(dictionary.name(b"Type"), Some(&b"ObjStm"[..]));
        assert_eq!(dictionary.integer(b"N"), Some(3));
        assert_eq!(
            dictionary.get(b"Filter"),
            Some(&Object::Array(vec![
                Object::Name(b"A85".to_vec()),
                Object::Name(b"Fl".to_vec())
            ]))
        );
        assert_eq!(dictionary.get(b"Encrypt"), Some(&Object::Reference(12, 0)));
        assert_eq!(
            dictionary.get(b"ID"),
            Some(&Object::Array(vec![
                Object::String(vec![0x0a, 0x1b]),
                Object::String(b"x)y".to_vec())
            ]))
        );
        assert_eq!(dictionary.get(b"Flag"), Some(&Object::Boolean(false)));
        assert_eq!(dictionary.get(b"Ratio"), Some(&Object::Real));
        assert_eq!(dictionary.name(b"Name"), Some(&b"F"[..]));
        assert_eq!(dictionary.name(b"G"), None);
        assert_eq!(dictionary.name(b"Sign#+1"), Some(&b"Na#-1"[..]));
        assert_eq!(dictionary.integer(b"G"), Some(1));
    }

    #[test]
    fn integers_not_references() {
        assert_eq!(
            parse("[1 2 3 R 4 5]"),
            Some(Object::Array(vec![
                Object::Integer(1),
                Object::Reference(2, 3),
                Object::Integer(4),
                Object::Integer(5)
            ]))
        );
        assert_eq!(parse("-4 0 R"), Some(Object::Integer(-4)));
        assert_eq!(parse("99999999999999999999"), Some(Object::Real));
    }

    #[test]
    fn hex_string_ends() {
        assert_eq!(hex_string(b"41 4>x"), Some((vec![0x41, 0x40], 5)));
        assert_eq!(hex_string(b">"), Some((Vec::new(), 1)));
        assert_eq!(hex_string(b"41zz>"), None);
        assert_eq!(hex_string(b"4142"), None);
    }

    #[test]
    fn object_header_tokens() {
        assert_eq!(object_header_before(b"1 0 obj", 4), Some((1, 0)));
        assert_eq!(
            object_header_before(b"\n4294967295 65535 obj", 18),
            Some((4294967295, 65535))
        );
        assert_eq!(object_header_before(b"4294967296 0 obj", 13), None);
        assert_eq!(object_header_before(b"x1 0 obj", 5), None);
        assert_eq!(object_header_before(b"1 0obj", 3), None);
        assert_eq!(object_header_before(b"0 obj", 2), None);
        assert_eq!(object_header_before(b"obj", 0), None);
    }

    #[test]
    fn damaged_syntax_rejected() {
        assert_eq!(parse("<< /A 1"), None);
        assert_eq!(parse("<< 1 2 >>"), None);
        assert_eq!(parse("[1 2"), None);
        assert_eq!(parse(")"), None);
        assert_eq!(parse(""), None);
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse(&deep), None);
    }
}
