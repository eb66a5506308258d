//! A small element tree read with quick-xml, shared by the STIX and TAXII
//! parsers. Names are kept as local names (the namespace prefix is dropped),
//! because feeds bind the STIX and CybOX namespaces to varying prefixes.
//!
//! The tree is flat. Every element is an entry of one vector and refers to
//! its parent, first child and next sibling by index. Names, attribute values and
//! text borrow from the input unless an entity or character reference had to
//! be decoded. So parsing a feed of 100,000 indicators allocates a few large
//! vectors instead of several strings per element.
//!
//! Documents with a DOCTYPE are rejected, so no entity is ever expanded;
//! only the five predefined XML entities and character references are
//! decoded.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted; deeper documents are rejected so the
/// recursive walks over the tree stay within the stack.
pub const MAX_DEPTH: usize = 200;

/// Index of no element, for a missing child or sibling.
const NONE: u32 = u32::MAX;

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

/// One attribute: local name, qualified name and decoded value.
#[derive(Debug, Clone)]
struct Attribute<'a> {
    local: &'a str,
    qualified: &'a str,
    value: Cow<'a, str>,
}

/// The stored form of one element; [`Element`] is the public view.
#[derive(Debug, Clone)]
struct Node<'a> {
    name: &'a str,
    /// Range of this element's entries in [`Document::attributes`].
    attributes: Range<u32>,
    text: Cow<'a, str>,
    parent: u32,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    /// Index after the last descendant. Elements are stored in document
    /// order, so `index..subtree_end` are this element and its descendants.
    subtree_end: u32,
    start: usize,
    end: usize,
}

/// A parsed document: every element and attribute, borrowing from the
/// input text.
#[derive(Debug, Clone)]
pub struct Document<'a> {
    nodes: Vec<Node<'a>>,
    attributes: Vec<Attribute<'a>>,
    root: u32,
}

impl<'a> Document<'a> {
    /// Returns the root element.
    pub fn root(&self) -> Element<'_> {
        Element {
            document: self,
            index: self.root,
        }
    }

    /// Returns the number of elements in the document.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Returns true when the document has no element, which
    /// [`parse_document`] never returns.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// One element of a [`Document`]: local name, attributes, text and
/// children. Copying it copies a reference and an index.
#[derive(Clone, Copy)]
pub struct Element<'d> {
    document: &'d Document<'d>,
    index: u32,
}

impl fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Element")
            .field("name", &self.name())
            .field("span", &self.span())
            .finish()
    }
}

impl<'d> Element<'d> {
    fn node(&self) -> &'d Node<'d> {
        &self.document.nodes[self.index as usize]
    }

    fn attribute_list(&self) -> &'d [Attribute<'d>] {
        let range = &self.node().attributes;
        &self.document.attributes[range.start as usize..range.end as usize]
    }

    /// Returns the local name (`Indicator` for `<stix:Indicator>`).
    pub fn name(&self) -> &'d str {
        self.node().name
    }

    /// Returns the text and CDATA directly inside this element, joined, with
    /// references decoded and not trimmed.
    pub fn text(&self) -> &'d str {
        &self.node().text
    }

    /// Returns the byte range of the element in the input, from the start
    /// tag to the end of the end tag.
    pub fn span(&self) -> Range<usize> {
        let node = self.node();
        node.start..node.end
    }

    /// Returns the value of the unprefixed attribute with this name
    /// (`type`, not `xsi:type`).
    pub fn attr(&self, name: &str) -> Option<&'d str> {
        self.attribute_list()
            .iter()
            .find(|attribute| attribute.qualified == name)
            .map(|attribute| &*attribute.value)
    }

    /// Returns the local part of `xsi:type` (`AddressObjectType` for
    /// `AddressObj:AddressObjectType`).
    pub fn xsi_type(&self) -> Option<&'d str> {
        self.attribute_list()
            .iter()
            .find(|attribute| attribute.local == "type" && attribute.qualified.ends_with(":type"))
            .map(|attribute| {
                let value: &'d str = &attribute.value;
                value.rsplit(':').next().unwrap_or(value)
            })
    }

    /// Iterates over the child elements in document order.
    pub fn children(&self) -> Children<'d> {
        Children {
            document: self.document,
            next: self.node().first_child,
        }
    }

    /// Returns true when the element has at least one child element.
    pub fn has_children(&self) -> bool {
        self.node().first_child != NONE
    }

    /// Returns the parent element, or `None` for the root.
    pub fn parent(&self) -> Option<Element<'d>> {
        let parent = self.node().parent;
        (parent != NONE).then_some(Element {
            document: self.document,
            index: parent,
        })
    }

    /// Iterates over this element and all its descendants in document
    /// order, without recursion.
    pub fn descendants(&self) -> impl Iterator<Item = Element<'d>> + use<'d> {
        let document = self.document;
        (self.index..self.node().subtree_end).map(move |index| Element { document, index })
    }

    pub fn child(&self, local: &str) -> Option<Element<'d>> {
        self.children().find(|child| child.name() == local)
    }

    pub fn children_named<'n>(
        &self,
        local: &'n str,
    ) -> impl Iterator<Item = Element<'d>> + use<'d, 'n> {
        self.children().filter(move |child| child.name() == local)
    }

    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<Element<'d>> {
        let mut current = *self;
        for name in names {
            current = current.child(name)?;
        }
        Some(current)
    }

    /// Returns the trimmed text of the child with this local name.
    pub fn child_text(&self, local: &str) -> Option<&'d str> {
        self.child(local)
            .map(|child| child.text().trim())
            .filter(|text| !text.is_empty())
    }
}

/// Iterator over the children of an element.
#[derive(Clone)]
pub struct Children<'d> {
    document: &'d Document<'d>,
    next: u32,
}

impl<'d> Iterator for Children<'d> {
    type Item = Element<'d>;

    fn next(&mut self) -> Option<Element<'d>> {
        if self.next == NONE {
            return None;
        }
        let element = Element {
            document: self.document,
            index: self.next,
        };
        self.next = element.node().next_sibling;
        Some(element)
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

/// Returns `part` as a slice of `input` when quick-xml handed out bytes of
/// the input itself, which the slice reader does for names, attribute values
/// and text. That saves copying them and checking their UTF-8 again.
fn borrow_from<'a>(input: &'a str, part: &[u8]) -> Option<&'a str> {
    let start = (part.as_ptr() as usize).checked_sub(input.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    input.get(start..end)
}

/// Converts bytes from quick-xml to text, borrowing from the input when the
/// bytes are part of it and copying them (invalid UTF-8 replaced) otherwise.
fn text_of<'a>(input: &'a str, part: &[u8]) -> Cow<'a, str> {
    match borrow_from(input, part) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(String::from_utf8_lossy(part).into_owned()),
    }
}

/// Like [`text_of`] for names, which the slice reader always hands out as
/// slices of the input. Should one not be, the name is empty, so it matches
/// no name the parsers look for.
fn name_of<'a>(input: &'a str, part: &[u8]) -> &'a str {
    borrow_from(input, part).unwrap_or_default()
}

/// Decodes the predefined entities and character references of a piece of
/// text or an attribute value, borrowing when there is none.
fn unescape<'a>(raw: Cow<'a, str>) -> Result<Cow<'a, str>, quick_xml::escape::EscapeError> {
    if !raw.contains('&') {
        return Ok(raw);
    }
    match raw {
        Cow::Borrowed(text) => quick_xml::escape::unescape(text),
        Cow::Owned(text) => quick_xml::escape::unescape(&text).map(|t| Cow::Owned(t.into_owned())),
    }
}

/// Builds a [`Document`] from quick-xml events.
struct Builder<'a> {
    input: &'a str,
    nodes: Vec<Node<'a>>,
    attributes: Vec<Attribute<'a>>,
    /// Indexes of the elements whose end tag has not been read yet.
    open: Vec<u32>,
    root: u32,
}

impl<'a> Builder<'a> {
    fn open_element(&mut self, start: &BytesStart<'_>, offset: u64) -> Result<u32, XmlError> {
        let input = self.input;
        if self.open.is_empty() && self.root != NONE {
            return Err(error_at(input, offset, "more than one root element"));
        }
        let name = name_of(input, start.local_name().into_inner());
        let tag = start.as_ref();
        let first_attribute = self.attributes.len();
        // quick-xml's own duplicate check allocates a list of keys for every
        // element; comparing with the attributes already stored does not.
        let mut attributes = start.attributes();
        attributes.with_checks(false);
        for attribute in attributes {
            let attribute = attribute.map_err(|e| {
                error_at(input, offset, format!("invalid attribute in <{name}>: {e}"))
            })?;
            let qualified = name_of(input, attribute.key.as_ref());
            if let Some(previous) = self.attributes[first_attribute..]
                .iter()
                .find(|previous| previous.qualified == qualified)
            {
                let duplicated = AttrError::Duplicated(
                    position_in(tag, qualified.as_bytes()),
                    position_in(tag, previous.qualified.as_bytes()),
                );
                return Err(error_at(
                    input,
                    offset,
                    format!("invalid attribute in <{name}>: {duplicated}"),
                ));
            }
            let value = unescape(text_of(input, &attribute.value)).map_err(|e| {
                error_at(
                    input,
                    offset,
                    format!("invalid value of attribute {qualified} in <{name}>: {e}"),
                )
            })?;
            self.attributes.push(Attribute {
                local: name_of(input, attribute.key.local_name().into_inner()),
                qualified,
                value,
            });
        }

        let index = u32::try_from(self.nodes.len())
            .ok()
            .filter(|index| *index != NONE)
            .ok_or_else(|| error_at(input, offset, "document has too many elements"))?;
        let attribute_range = match (
            u32::try_from(first_attribute),
            u32::try_from(self.attributes.len()),
        ) {
            (Ok(first), Ok(end)) => first..end,
            _ => return Err(error_at(input, offset, "document has too many attributes")),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        self.nodes.push(Node {
            name,
            attributes: attribute_range,
            text: Cow::Borrowed(""),
            parent: self.open.last().copied().unwrap_or(NONE),
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            subtree_end: index + 1,
            start,
            end: start,
        });

        match self.open.last() {
            Some(&parent) => {
                let parent = &mut self.nodes[parent as usize];
                let previous = parent.last_child;
                parent.last_child = index;
                if previous == NONE {
                    parent.first_child = index;
                } else {
                    self.nodes[previous as usize].next_sibling = index;
                }
            }
            None => self.root = index,
        }
        Ok(index)
    }

    /// Appends a piece of text to the innermost open element.
    fn push_text(&mut self, piece: Cow<'a, str>) {
        let Some(&current) = self.open.last() else {
            return;
        };
        let text = &mut self.nodes[current as usize].text;
        if text.is_empty() {
            *text = piece;
        } else if !piece.is_empty() {
            text.to_mut().push_str(&piece);
        }
    }
}

/// Returns the offset of `part` in `tag`, or 0 when it is not part of it.
fn position_in(tag: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize)
        .checked_sub(tag.as_ptr() as usize)
        .filter(|position| *position <= tag.len())
        .unwrap_or(0)
}

/// Parses a whole document.
pub fn parse_document(input: &str) -> Result<Document<'_>, XmlError> {
    let mut reader = Reader::from_str(input);
    let mut builder = Builder {
        input,
        nodes: Vec::new(),
        attributes: Vec::new(),
        open: Vec::new(),
        root: NONE,
    };

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
                if builder.open.len() >= MAX_DEPTH {
                    return Err(error_at(
                        input,
                        position,
                        format!("elements nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let index = builder.open_element(&start, position)?;
                builder.open.push(index);
            }
            Event::Empty(start) => {
                let index = builder.open_element(&start, position)?;
                builder.nodes[index as usize].end =
                    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
            }
            Event::End(_) => {
                let Some(index) = builder.open.pop() else {
                    return Err(error_at(input, position, "end tag without a start tag"));
                };
                // Fits: open_element rejects an element count past u32::MAX.
                let subtree_end = u32::try_from(builder.nodes.len()).unwrap_or(NONE);
                let node = &mut builder.nodes[index as usize];
                node.end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                node.subtree_end = subtree_end;
            }
            Event::Text(text) => {
                let raw = text_of(input, &text.into_inner());
                let decoded = unescape(raw).map_err(|e| {
                    error_at(
                        input,
                        position,
                        format!("invalid character or entity reference: {e}"),
                    )
                })?;
                builder.push_text(decoded);
            }
            Event::CData(data) => builder.push_text(text_of(input, &data.into_inner())),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }

    if let Some(&open) = builder.open.last() {
        return Err(error_at(
            input,
            u64::try_from(input.len()).unwrap_or(u64::MAX),
            format!(
                "document ends inside <{}>",
                builder.nodes[open as usize].name
            ),
        ));
    }
    if builder.root == NONE {
        return Err(error_at(input, 0, "document has no root element"));
    }
    Ok(Document {
        nodes: builder.nodes,
        attributes: builder.attributes,
        root: builder.root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_local_names() {
        let document =
            parse_document(r#"<a:x xmlns:a="u"><a:y k="1">t&amp;u</a:y></a:x>"#).unwrap();
        let root = document.root();
        assert_eq!(root.name(), "x");
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
    fn text_joined_around_children() {
        let input = "<x>a<!-- c --> b<y/>c&lt;<![CDATA[d]]></x>";
        let document = parse_document(input).unwrap();
        assert_eq!(document.root().text(), "a bc<d");
    }

    #[test]
    fn span_covers_element() {
        let input = "<x>\n<y k=\"1\">t</y><z/></x>";
        let document = parse_document(input).unwrap();
        let root = document.root();
        let y = root.child("y").unwrap();
        let z = root.child("z").unwrap();
        assert_eq!(&input[y.span()], "<y k=\"1\">t</y>");
        assert_eq!(&input[z.span()], "<z/>");
        assert_eq!(root.span(), 0..input.len());
    }

    #[test]
    fn descendants_in_document_order() {
        let document = parse_document("<a><b><c/></b><d/></a>").unwrap();
        let root = document.root();
        let names: Vec<&str> = root.descendants().map(|e| e.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let b = root.child("b").unwrap();
        let below_b: Vec<&str> = b.descendants().map(|e| e.name()).collect();
        assert_eq!(below_b, ["b", "c"]);
        assert_eq!(b.parent().map(|p| p.name()), Some("a"));
        assert!(root.parent().is_none());
        assert_eq!(document.len(), 4);
    }

    #[test]
    fn duplicate_attribute_rejected() {
        let error = parse_document(r#"<x k="1" k="2"/>"#).unwrap_err();
        assert_eq!(
            error.message,
            "invalid attribute in <x>: position 8: duplicated attribute, \
             previous declaration at position 2"
        );
    }

    #[test]
    fn second_root_rejected() {
        let error = parse_document("<x/><y/>").unwrap_err();
        assert_eq!(error.message, "more than one root element");
    }

    #[test]
    fn depth_limited() {
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        let error = parse_document(&deep).unwrap_err();
        assert!(error.message.contains("nested deeper"));
    }
}
