//! A small element tree read with quick-xml, shared by the STIX and TAXII
//! parsers. Names are kept as local names (the namespace prefix is dropped),
//! because feeds bind the STIX and CybOX namespaces to varying prefixes.
//!
//! Documents with a DOCTYPE are rejected, so no entity is ever expanded;
//! only the five predefined XML entities and character references are
//! decoded.

use std::fmt;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted; deeper documents are rejected so the
/// recursive walks over the tree stay within the stack.
pub const MAX_DEPTH: usize = 200;

/// An XML syntax or structure error with its position in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub line: usize,
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, byte offset {})",
            self.message, self.line, self.offset
        )
    }
}

impl std::error::Error for XmlError {}

/// One element: local name, attributes by local name, text and children.
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    /// Attributes as (local name, qualified name, value).
    pub attributes: Vec<(String, String, String)>,
    /// Concatenated text and CDATA directly inside this element.
    pub text: String,
    pub children: Vec<Element>,
    /// Byte offsets of the start tag and of the end of the end tag.
    pub start: usize,
    pub end: usize,
}

impl Element {
    /// Returns the value of the unprefixed attribute with this name
    /// (`type`, not `xsi:type`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(_, qualified, _)| qualified == name)
            .map(|(_, _, value)| value.as_str())
    }

    /// Returns the local part of `xsi:type` (`AddressObjectType` for
    /// `AddressObj:AddressObjectType`).
    pub fn xsi_type(&self) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(local, qualified, _)| local == "type" && qualified.ends_with(":type"))
            .map(|(_, _, value)| value.rsplit(':').next().unwrap_or(value.as_str()))
    }

    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == local)
    }

    pub fn children_named<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children
            .iter()
            .filter(move |child| child.name == local)
    }

    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut current = self;
        for name in names {
            current = current.child(name)?;
        }
        Some(current)
    }

    /// Returns the trimmed text of the child with this local name.
    pub fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local)
            .map(|child| child.text.trim())
            .filter(|text| !text.is_empty())
    }
}

/// Computes the 1-based line of a byte offset.
pub fn line_of(input: &str, offset: usize) -> usize {
    let end = offset.min(input.len());
    input
        .as_bytes()
        .get(..end)
        .map(|prefix| prefix.iter().filter(|b| **b == b'\n').count() + 1)
        .unwrap_or(1)
}

fn error_at(input: &str, offset: u64, message: impl Into<String>) -> XmlError {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    XmlError {
        line: line_of(input, offset),
        offset,
        message: message.into(),
    }
}

fn open_element(input: &str, start: &BytesStart<'_>, offset: u64) -> Result<Element, XmlError> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute
            .map_err(|e| error_at(input, offset, format!("invalid attribute in <{name}>: {e}")))?;
        let local = String::from_utf8_lossy(attribute.key.local_name().as_ref()).into_owned();
        let qualified = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
        let value = attribute.unescape_value().map_err(|e| {
            error_at(
                input,
                offset,
                format!("invalid value of attribute {qualified} in <{name}>: {e}"),
            )
        })?;
        attributes.push((local, qualified, value.into_owned()));
    }
    Ok(Element {
        name,
        attributes,
        start: usize::try_from(offset).unwrap_or(usize::MAX),
        ..Element::default()
    })
}

/// Parses a whole document and returns its root element.
pub fn parse_document(input: &str) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(input);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            error_at(
                input,
                reader.error_position(),
                format!("malformed XML: {e}"),
            )
        })?;
        match event {
            Event::DocType(_) => {
                return Err(error_at(
                    input,
                    position,
                    "document has a DOCTYPE; STIX documents never need one and entity \
                     declarations are not expanded, so remove it",
                ));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(error_at(
                        input,
                        position,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if root.is_some() && stack.is_empty() {
                    return Err(error_at(input, position, "more than one root element"));
                }
                stack.push(open_element(input, &start, position)?);
            }
            Event::Empty(start) => {
                let mut element = open_element(input, &start, position)?;
                element.end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None if root.is_none() => root = Some(element),
                    None => return Err(error_at(input, position, "more than one root element")),
                }
            }
            Event::End(_) => {
                let Some(mut element) = stack.pop() else {
                    return Err(error_at(input, position, "end tag without a start tag"));
                };
                element.end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                let decoded = text.unescape().map_err(|e| {
                    error_at(
                        input,
                        position,
                        format!("invalid character or entity reference: {e}"),
                    )
                })?;
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&decoded);
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    current
                        .text
                        .push_str(&String::from_utf8_lossy(&data.into_inner()));
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }

    if let Some(open) = stack.last() {
        return Err(error_at(
            input,
            u64::try_from(input.len()).unwrap_or(u64::MAX),
            format!("document ends inside <{}>", open.name),
        ));
    }
    root.ok_or_else(|| error_at(input, 0, "document has no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_local_names() {
        let root = parse_document(r#"<a:x xmlns:a="u"><a:y k="1">t&amp;u</a:y></a:x>"#).unwrap();
        assert_eq!(root.name, "x");
        assert_eq!(root.child_text("y"), Some("t&u"));
        assert_eq!(root.child("y").and_then(|y| y.attr("k")), Some("1"));
    }

    #[test]
    fn doctype_rejected() {
        let error = parse_document("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>").unwrap_err();
        assert!(error.message.contains("DOCTYPE"));
    }

    #[test]
    fn unclosed_reports_line() {
        let error = parse_document("<x>\n<y>\n").unwrap_err();
        assert_eq!(error.line, 3);
    }

    #[test]
    fn depth_limited() {
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        let error = parse_document(&deep).unwrap_err();
        assert!(error.message.contains("nested deeper"));
    }
}
