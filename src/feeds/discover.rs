//! `ioc-milter discover URL`: lists what a TAXII server offers, so an
//! administrator can fill in a `[[source]]` without another tool. A TAXII
//! 2.1 server is asked first (GET with the TAXII 2.1 media type); when the
//! answer is not TAXII 2.1 JSON the URL is taken as a TAXII 1.1 discovery
//! service (POST of a Discovery_Request), and each collection management
//! service found is asked for its collections.

use serde::Serialize;

use super::http::HttpError;
use super::taxii21::{ApiRoot, Taxii21Client, Taxii21Error};
use super::web::{GetOptions, WebClient};
use super::xml;

const TAXII11_HEADERS: [(&str, &str); 6] = [
    ("Content-Type", "application/xml"),
    ("Accept", "application/xml"),
    (
        "X-TAXII-Content-Type",
        "urn:taxii.mitre.org:message:xml:1.1",
    ),
    ("X-TAXII-Accept", "urn:taxii.mitre.org:message:xml:1.1"),
    ("X-TAXII-Services", "urn:taxii.mitre.org:services:1.1"),
    ("X-TAXII-Protocol", "urn:taxii.mitre.org:protocol:http:1.0"),
];

const NAMESPACES: &str =
    r#"xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1""#;

/// One TAXII 1.1 service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub service_type: String,
    pub address: String,
    pub available: bool,
}

/// One TAXII 1.1 collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Taxii11Collection {
    pub name: String,
    pub description: String,
    pub available: bool,
    /// Poll service addresses.
    pub polling: Vec<String>,
}

/// The services and collections a server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "version")]
pub enum Discovery {
    #[serde(rename = "2.1")]
    Taxii21 { api_roots: Vec<ApiRoot> },
    #[serde(rename = "1.1")]
    Taxii11 {
        services: Vec<Service>,
        collections: Vec<Taxii11Collection>,
        /// Errors of collection services that could not be listed.
        errors: Vec<String>,
    },
}

/// Returns scheme, host and port of a URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let url = url::Url::parse(url).ok()?;
    Some((
        url.scheme().to_string(),
        url.host_str()?.to_string(),
        url.port_or_known_default()?,
    ))
}

fn message_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Parses a TAXII 1.1 Discovery_Response.
pub fn parse_services(text: &str) -> Result<Vec<Service>, String> {
    let document = xml::parse_document(text).map_err(|e| e.to_string())?;
    let root = document.root();
    if root.name() != "Discovery_Response" {
        return Err(status_or_root(root));
    }
    Ok(root
        .children_named("Service_Instance")
        .map(|service| Service {
            service_type: service.attr("service_type").unwrap_or_default().to_string(),
            address: service
                .child_text("Address")
                .unwrap_or_default()
                .to_string(),
            available: service.attr("available") != Some("false"),
        })
        .collect())
}

/// Parses a TAXII 1.1 Collection_Information_Response.
pub fn parse_collections(text: &str) -> Result<Vec<Taxii11Collection>, String> {
    let document = xml::parse_document(text).map_err(|e| e.to_string())?;
    let root = document.root();
    if root.name() != "Collection_Information_Response" {
        return Err(status_or_root(root));
    }
    Ok(root
        .children_named("Collection")
        .map(|collection| Taxii11Collection {
            name: collection
                .attr("collection_name")
                .unwrap_or_default()
                .to_string(),
            description: collection
                .child_text("Description")
                .unwrap_or_default()
                .to_string(),
            available: collection.attr("available") != Some("false"),
            polling: collection
                .children_named("Polling_Service")
                .filter_map(|p| p.child_text("Address"))
                .map(str::to_string)
                .collect(),
        })
        .collect())
}

fn status_or_root(root: xml::Element<'_>) -> String {
    if root.name() == "Status_Message" {
        let status = root.attr("status_type").unwrap_or("unknown");
        let message = root.child_text("Message").unwrap_or_default();
        return format!("the server answered status {status}: {message}");
    }
    format!("unexpected answer <{}>", root.name())
}

async fn taxii11_post(web: &WebClient, url: &str, body: String) -> Result<String, HttpError> {
    let options = GetOptions {
        headers: TAXII11_HEADERS
            .iter()
            .map(|(name, value)| (*name, (*value).to_string()))
            .collect(),
        ..GetOptions::default()
    };
    let response = web.post(url, &options, body).await?;
    String::from_utf8(response.body).map_err(|e| HttpError::Encoding {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// Discovers a TAXII 2.1 or 1.1 server at `url`. The error is one line that
/// names the URL, what each protocol's request got, and what to check.
pub async fn discover(web: &WebClient, url: &str) -> Result<Discovery, String> {
    let is_web_url = url::Url::parse(url)
        .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.has_host());
    if !is_web_url {
        return Err(format!(
            "invalid URL {url:?}: write the server's discovery URL with http:// or https://, e.g. https://HOST/taxii2/ or https://HOST/taxii/discovery"
        ));
    }
    let taxii21 = Taxii21Client { web: web.clone() };
    let taxii21_error = match taxii21.discover(url).await {
        Ok(api_roots) => return Ok(Discovery::Taxii21 { api_roots }),
        Err(error) => error,
    };
    if let Taxii21Error::Http(error) = &taxii21_error {
        if let Some(hint) = unreachable_hint(error) {
            // The TAXII 1.1 POST goes to the same server with the same
            // settings, so it would fail the same way.
            return Err(format!("{error}{hint}"));
        }
    }

    let request = format!(
        r#"<taxii_11:Discovery_Request {NAMESPACES} message_id="{}"/>"#,
        message_id()
    );
    let taxii11_attempt = match taxii11_post(web, url, request).await {
        Ok(text) => match parse_services(&text) {
            Ok(services) => return Ok(list_taxii11_collections(web, url, services).await),
            Err(reason) => Attempt {
                status: None,
                text: reason,
            },
        },
        Err(error) => Attempt::from_http(&error),
    };
    let taxii21_attempt = match &taxii21_error {
        Taxii21Error::Http(error) => Attempt::from_http(error),
        Taxii21Error::Json { reason, .. } => Attempt {
            status: None,
            text: format!("not TAXII 2.1 JSON ({reason})"),
        },
        other => Attempt {
            status: None,
            text: other.to_string(),
        },
    };
    Err(format!(
        "cannot discover {url}: TAXII 2.1 GET: {}; TAXII 1.1 POST: {}; {}",
        taxii21_attempt.text,
        taxii11_attempt.text,
        next_step([taxii21_attempt.status, taxii11_attempt.status])
    ))
}

/// The outcome of one failed discovery request, described without the URL.
struct Attempt {
    /// The HTTP status, when the server responded with an error status.
    status: Option<u16>,
    text: String,
}

impl Attempt {
    fn from_http(error: &HttpError) -> Attempt {
        match error {
            HttpError::Status { status, reason, .. } => Attempt {
                status: Some(*status),
                text: format!("HTTP {status} ({reason})"),
            },
            other => Attempt {
                status: None,
                text: other.to_string(),
            },
        }
    }
}

/// Returns the advice to append when `error` means that no request to the
/// server can succeed (no connection, a timeout, a secret that cannot be
/// read), or `None` when the server responded.
fn unreachable_hint(error: &HttpError) -> Option<&'static str> {
    match error {
        HttpError::Request { .. } | HttpError::Timeout { .. } => {
            Some("; check the host name and port in the URL, that the server runs, and --proxy")
        }
        HttpError::Password { .. }
        | HttpError::ApiKey { .. }
        | HttpError::ClientCert { .. }
        | HttpError::Client(_) => Some(""),
        _ => None,
    }
}

/// Returns what to check after both discovery requests failed with the
/// HTTP `statuses` (`None` where the server responded with something else).
fn next_step(statuses: [Option<u16>; 2]) -> &'static str {
    let answered = || statuses.iter().flatten();
    if answered().any(|status| matches!(status, 401 | 403 | 407)) {
        return "check the credentials: --username with --password-env or --password-file, or --api-key-env, or --client-cert and --client-key";
    }
    // A plain web server returns 501 to a POST that it does not serve.
    if answered().any(|status| *status >= 500 && *status != 501) {
        return "the server failed; try again later or ask its operator, and check that the URL is the server's discovery path";
    }
    "check that the URL is the server's discovery path, e.g. https://HOST/taxii2/ for TAXII 2.1 or https://HOST/taxii/discovery for TAXII 1.1, and the credentials if the server needs them"
}

/// Asks each collection management service of a TAXII 1.1 server for its
/// collections.
async fn list_taxii11_collections(web: &WebClient, url: &str, services: Vec<Service>) -> Discovery {
    let mut collections = Vec::new();
    let mut errors = Vec::new();
    let home = origin(url);
    for service in services
        .iter()
        .filter(|s| s.service_type == "COLLECTION_MANAGEMENT" && !s.address.is_empty())
    {
        if origin(&service.address) != home {
            // The credentials are only sent to the server that was asked.
            errors.push(format!(
                "{}: on another server than the discovery URL, so it was not queried with these credentials; run discover on it directly",
                service.address
            ));
            continue;
        }
        let request = format!(
            r#"<taxii_11:Collection_Information_Request {NAMESPACES} message_id="{}"/>"#,
            message_id()
        );
        match taxii11_post(web, &service.address, request)
            .await
            .map_err(|error| error.to_string())
            .and_then(|text| parse_collections(&text))
        {
            Ok(found) => collections.extend(found),
            Err(error) => errors.push(format!("{}: {error}", service.address)),
        }
    }
    Discovery::Taxii11 {
        services,
        collections,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_listed() {
        let text = r#"<taxii_11:Discovery_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" in_response_to="2">
  <taxii_11:Service_Instance service_type="POLL" service_version="urn:taxii.mitre.org:services:1.1" available="true">
    <taxii_11:Address>https://taxii.example.net/poll</taxii_11:Address>
  </taxii_11:Service_Instance>
</taxii_11:Discovery_Response>"#;
        let services = parse_services(text).unwrap_or_default();
        assert_eq!(
            services,
            [Service {
                service_type: "POLL".into(),
                address: "https://taxii.example.net/poll".into(),
                available: true
            }]
        );
    }

    #[test]
    fn collections_listed() {
        let text = r#"<taxii_11:Collection_Information_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" in_response_to="2">
  <taxii_11:Collection collection_name="user_feed" collection_type="DATA_FEED" available="true">
    <taxii_11:Description>Feed of one user</taxii_11:Description>
    <taxii_11:Polling_Service><taxii_11:Address>https://taxii.example.net/poll</taxii_11:Address></taxii_11:Polling_Service>
  </taxii_11:Collection>
</taxii_11:Collection_Information_Response>"#;
        let collections = parse_collections(text).unwrap_or_default();
        assert_eq!(collections.len(), 1);
        let first = collections.first().cloned();
        assert_eq!(first.as_ref().map(|c| c.name.as_str()), Some("user_feed"));
        assert_eq!(
            first.map(|c| c.polling),
            Some(vec!["https://taxii.example.net/poll".to_string()])
        );
    }

    #[test]
    fn status_message_reported() {
        let text = r#"<taxii_11:Status_Message xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" in_response_to="2" status_type="UNAUTHORIZED"><taxii_11:Message>no</taxii_11:Message></taxii_11:Status_Message>"#;
        assert_eq!(
            parse_services(text),
            Err("the server answered status UNAUTHORIZED: no".to_string())
        );
    }
}
