//! TAXII 1.1 poll client (XML message binding 1.1, HTTP protocol binding
//! 1.0): Poll_Request, Poll_Fulfillment for multi-part results, and the
//! parsing of Poll_Response and Status_Message.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::escape::escape;
use sha2::{Digest, Sha256};

use super::http::{HttpClient, HttpError};
use super::stix1::{self, parse_timestamp, ParseContext, ParseOutcome};
use super::xml::{self, Element, XmlError};

/// Namespace of the TAXII 1.1 XML message binding.
pub const MESSAGE_NAMESPACE: &str = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1";
const MESSAGE_BINDING: &str = "urn:taxii.mitre.org:message:xml:1.1";
const SERVICES: &str = "urn:taxii.mitre.org:services:1.1";
const PROTOCOL_HTTP: &str = "urn:taxii.mitre.org:protocol:http:1.0";
const PROTOCOL_HTTPS: &str = "urn:taxii.mitre.org:protocol:https:1.0";

/// An error of a TAXII exchange.
#[derive(Debug, thiserror::Error)]
pub enum TaxiiError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("invalid TAXII response from {url}: {error}")]
    Xml { url: String, error: XmlError },
    #[error("{url} answered Status_Message {status_type}{}", message_suffix(.message))]
    Status {
        url: String,
        status_type: String,
        message: Option<String>,
    },
    #[error("{url} answered <{root}>; expected Poll_Response or Status_Message")]
    UnexpectedMessage { url: String, root: String },
    #[error("{url} still had more result parts after max_parts = {max_parts}; raise max_parts or shorten poll_segment")]
    TooManyParts { url: String, max_parts: u32 },
    #[error("{url} sent result part {part} with the same content as the part before it; the server is repeating itself")]
    RepeatedPart { url: String, part: u32 },
    #[error(
        "{url} answered more=\"true\" without a result_id, so the next part cannot be requested"
    )]
    MissingResultId { url: String },
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(text) => format!(": {text}"),
        None => String::new(),
    }
}

/// One content block of a Poll_Response, already parsed.
#[derive(Debug, Clone)]
pub struct ContentBlock {
    pub binding: Option<String>,
    pub timestamp_label: Option<DateTime<Utc>>,
    pub outcome: ParseOutcome,
    /// The reason the block's content could not be parsed, if it could not.
    pub error: Option<String>,
}

/// One parsed Poll_Response.
#[derive(Debug, Clone, Default)]
pub struct PollResponse {
    pub more: bool,
    pub result_id: Option<String>,
    pub result_part_number: Option<u32>,
    pub inclusive_end: Option<DateTime<Utc>>,
    pub record_count: Option<u64>,
    pub blocks: Vec<ContentBlock>,
    /// SHA-256 of the raw content blocks, to detect a repeated part.
    pub fingerprint: [u8; 32],
}

/// Formats a timestamp as TAXII expects it (`2024-01-10T10:00:00+00:00`).
/// The TAXII 1.1 schema allows at most six fractional digits, so the time
/// is truncated to microseconds.
pub fn format_timestamp(time: DateTime<Utc>) -> String {
    if time.timestamp_subsec_micros() == 0 {
        time.to_rfc3339_opts(SecondsFormat::Secs, false)
    } else {
        time.to_rfc3339_opts(SecondsFormat::Micros, false)
    }
}

/// Writes a Poll_Request for a FULL response without asynchronous polling.
pub fn poll_request(
    message_id: &str,
    collection: &str,
    begin: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> String {
    let mut body = format!(
        "<taxii_11:Poll_Request xmlns:taxii_11=\"{MESSAGE_NAMESPACE}\" message_id=\"{}\" collection_name=\"{}\">",
        escape(message_id),
        escape(collection)
    );
    if let Some(begin) = begin {
        let _ = write!(
            body,
            "<taxii_11:Exclusive_Begin_Timestamp>{}</taxii_11:Exclusive_Begin_Timestamp>",
            format_timestamp(begin)
        );
    }
    if let Some(end) = end {
        let _ = write!(
            body,
            "<taxii_11:Inclusive_End_Timestamp>{}</taxii_11:Inclusive_End_Timestamp>",
            format_timestamp(end)
        );
    }
    body.push_str(
        "<taxii_11:Poll_Parameters allow_asynch=\"false\">\
         <taxii_11:Response_Type>FULL</taxii_11:Response_Type>\
         </taxii_11:Poll_Parameters></taxii_11:Poll_Request>",
    );
    body
}

/// Writes a Poll_Fulfillment asking for one part of a multi-part result.
pub fn poll_fulfillment(message_id: &str, collection: &str, result_id: &str, part: u32) -> String {
    format!(
        "<taxii_11:Poll_Fulfillment xmlns:taxii_11=\"{MESSAGE_NAMESPACE}\" message_id=\"{}\" \
         collection_name=\"{}\" result_id=\"{}\" result_part_number=\"{part}\"/>",
        escape(message_id),
        escape(collection),
        escape(result_id)
    )
}

/// Parses a Poll_Response; a Status_Message becomes [`TaxiiError::Status`].
pub fn parse_response(
    body: &str,
    url: &str,
    context: &ParseContext,
) -> Result<PollResponse, TaxiiError> {
    let document = xml::parse_document(body).map_err(|error| TaxiiError::Xml {
        url: url.to_string(),
        error,
    })?;
    let root = document.root();

    match root.name() {
        "Status_Message" => {
            return Err(TaxiiError::Status {
                url: url.to_string(),
                status_type: root.attr("status_type").unwrap_or("UNKNOWN").to_string(),
                message: root.child_text("Message").map(str::to_string),
            })
        }
        "Poll_Response" => {}
        other => {
            return Err(TaxiiError::UnexpectedMessage {
                url: url.to_string(),
                root: other.to_string(),
            })
        }
    }

    let mut response = PollResponse {
        more: root
            .attr("more")
            .is_some_and(|more| more == "true" || more == "1"),
        result_id: root.attr("result_id").map(str::to_string),
        result_part_number: root
            .attr("result_part_number")
            .and_then(|part| part.trim().parse().ok()),
        inclusive_end: root
            .child_text("Inclusive_End_Timestamp")
            .and_then(parse_timestamp),
        record_count: root
            .child_text("Record_Count")
            .and_then(|count| count.parse().ok()),
        ..PollResponse::default()
    };

    let mut hasher = Sha256::new();
    for block in root.children_named("Content_Block") {
        if let Some(raw) = body.get(block.span()) {
            hasher.update(raw.as_bytes());
        }
        response.blocks.push(content_block(block, context));
    }
    response.fingerprint = hasher.finalize().into();
    Ok(response)
}

fn content_block(block: Element<'_>, context: &ParseContext) -> ContentBlock {
    let timestamp_label = block
        .child_text("Timestamp_Label")
        .and_then(parse_timestamp);
    let binding = block
        .child("Content_Binding")
        .and_then(|binding| binding.attr("binding_id"))
        .map(str::to_string);
    let block_context = ParseContext {
        timestamp_label,
        ..context.clone()
    };

    let parsed = match block.child("Content") {
        None => Err("content block has no Content element".to_string()),
        Some(content) if content.has_children() => {
            stix1::parse_element(content, &block_context).map_err(|e| e.to_string())
        }
        Some(content) => {
            // Escaped text: the STIX document is the text of Content.
            let text = content.text().trim();
            if text.starts_with('<') {
                stix1::parse(text, &block_context).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "content with binding {} is not XML",
                    binding.as_deref().unwrap_or("(none)")
                ))
            }
        }
    };

    match parsed {
        Ok(outcome) => ContentBlock {
            binding,
            timestamp_label,
            outcome,
            error: None,
        },
        Err(error) => ContentBlock {
            binding,
            timestamp_label,
            outcome: ParseOutcome::default(),
            error: Some(error),
        },
    }
}

/// Everything read from one poll window, over all its result parts.
#[derive(Debug, Clone, Default)]
pub struct WindowResult {
    pub outcome: ParseOutcome,
    pub blocks: u64,
    /// Blocks whose content could not be parsed.
    pub bad_blocks: u64,
    pub parts: u32,
    /// The server's Inclusive_End_Timestamp of the last part, if any.
    pub inclusive_end: Option<DateTime<Utc>>,
    /// The largest Timestamp_Label seen.
    pub latest_label: Option<DateTime<Utc>>,
}

/// A poll client for one TAXII 1.1 collection.
#[derive(Debug, Clone)]
pub struct Taxii11Client {
    pub http: HttpClient,
    pub collection: String,
    pub https: bool,
    pub max_parts: u32,
}

impl Taxii11Client {
    fn headers(&self) -> [(&'static str, &'static str); 6] {
        let protocol = if self.https {
            PROTOCOL_HTTPS
        } else {
            PROTOCOL_HTTP
        };
        [
            ("Content-Type", "application/xml"),
            ("Accept", "application/xml"),
            ("X-TAXII-Content-Type", MESSAGE_BINDING),
            ("X-TAXII-Accept", MESSAGE_BINDING),
            ("X-TAXII-Services", SERVICES),
            ("X-TAXII-Protocol", protocol),
        ]
    }

    async fn exchange(
        &self,
        body: String,
        context: &ParseContext,
    ) -> Result<PollResponse, TaxiiError> {
        let text = self.http.post(&self.headers(), body).await?;
        parse_response(&text, self.http.url(), context)
    }

    /// Polls the window (`begin`, `end`] and follows every result part, up
    /// to `max_parts`.
    pub async fn poll_window(
        &self,
        begin: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
        context: &ParseContext,
    ) -> Result<WindowResult, TaxiiError> {
        let url = self.http.url().to_string();
        let request = poll_request(&new_message_id(), &self.collection, begin, end);
        let mut response = self.exchange(request, context).await?;
        let mut result = WindowResult::default();
        let mut previous: Option<[u8; 32]> = None;
        let mut part: u32 = 1;

        loop {
            if !response.blocks.is_empty() && previous == Some(response.fingerprint) {
                return Err(TaxiiError::RepeatedPart { url, part });
            }
            previous = Some(response.fingerprint);
            result.parts = part;
            if response.inclusive_end.is_some() {
                result.inclusive_end = response.inclusive_end;
            }
            let more = response.more;
            let result_id = response.result_id.clone();
            absorb_blocks(&mut result, response.blocks, &url);

            if !more {
                return Ok(result);
            }
            if part >= self.max_parts {
                return Err(TaxiiError::TooManyParts {
                    url,
                    max_parts: self.max_parts,
                });
            }
            let Some(result_id) = result_id else {
                return Err(TaxiiError::MissingResultId { url });
            };
            part += 1;
            let request = poll_fulfillment(&new_message_id(), &self.collection, &result_id, part);
            response = self.exchange(request, context).await?;
        }
    }
}

fn absorb_blocks(result: &mut WindowResult, blocks: Vec<ContentBlock>, url: &str) {
    for block in blocks {
        result.blocks += 1;
        if let Some(label) = block.timestamp_label {
            result.latest_label = result.latest_label.max(Some(label));
        }
        if let Some(error) = &block.error {
            result.bad_blocks += 1;
            result.outcome.counts.invalid += 1;
            tracing::warn!(url, binding = ?block.binding, %error, "skipped a content block that could not be parsed");
        }
        result.outcome.absorb(block.outcome);
    }
}

fn new_message_id() -> String {
    rand::random::<u64>().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_window() {
        let begin = parse_timestamp("2024-02-01T00:00:00Z");
        let end = parse_timestamp("2024-03-01T00:00:00Z");
        let body = poll_request("7", "user_a&b", begin, end);
        assert!(body.contains("collection_name=\"user_a&amp;b\""));
        assert!(body.contains(
            "<taxii_11:Exclusive_Begin_Timestamp>2024-02-01T00:00:00+00:00</taxii_11:Exclusive_Begin_Timestamp>"
        ));
        assert!(body.contains("<taxii_11:Inclusive_End_Timestamp>2024-03-01T00:00:00+00:00"));
        assert!(body.contains("allow_asynch=\"false\""));
        assert!(xml::parse_document(&body).is_ok());
    }

    #[test]
    fn timestamp_at_most_micros() {
        let time = parse_timestamp("2024-02-01T00:00:00.123456789Z").unwrap();
        assert_eq!(format_timestamp(time), "2024-02-01T00:00:00.123456+00:00");
    }

    #[test]
    fn fulfillment_has_part() {
        let body = poll_fulfillment("8", "c", "42", 2);
        let document = xml::parse_document(&body).unwrap();
        let root = document.root();
        assert_eq!(root.name(), "Poll_Fulfillment");
        assert_eq!(root.attr("result_id"), Some("42"));
        assert_eq!(root.attr("result_part_number"), Some("2"));
    }
}
