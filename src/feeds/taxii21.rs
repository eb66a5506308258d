//! TAXII 2.1 client: discovery, API roots, collections, and the objects
//! endpoint with `added_after`, paging through `more`/`next` and, when a
//! server gives no `next`, through `X-TAXII-Date-Added-Last`.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::http::HttpError;
use super::stix2::{self, StixObjects};
use super::web::{GetOptions, WebClient};

/// The media type of TAXII 2.1 requests and responses.
pub const ACCEPT: &str = "application/taxii+json;version=2.1";

/// An error of a TAXII 2.1 exchange.
#[derive(Debug, thiserror::Error)]
pub enum Taxii21Error {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("response of {url} is not TAXII 2.1 JSON: {reason}")]
    Json { url: String, reason: String },
    #[error("collection {collection:?} not found under {api_root}; `ioc-milter discover {api_root}` lists the collections")]
    NoCollection {
        api_root: String,
        collection: String,
    },
    #[error("more than max_parts = {max} pages from {url}; raise max_parts or poll more often")]
    TooManyPages { url: String, max: u32 },
    #[error("page {page} from {url} repeats the previous page; the server is looping, so the poll stops")]
    Repeated { url: String, page: u32 },
}

/// A collection as listed by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collection {
    pub id: String,
    pub title: String,
    pub can_read: bool,
}

/// An API root and its collections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiRoot {
    pub url: String,
    pub title: String,
    pub collections: Vec<Collection>,
    /// Why the collections could not be listed, if they could not.
    pub error: Option<String>,
}

/// Everything fetched by one objects poll.
#[derive(Debug, Default)]
pub struct ObjectsResult {
    pub objects: StixObjects,
    pub pages: u32,
    /// Newest `X-TAXII-Date-Added-Last` seen: the next delta's start.
    pub date_added_last: Option<DateTime<Utc>>,
}

/// Formats `added_after` the way servers compare it.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A TAXII 2.1 client for one server.
#[derive(Debug, Clone)]
pub struct Taxii21Client {
    pub web: WebClient,
}

impl Taxii21Client {
    async fn get_json(&self, url: &str) -> Result<(Value, super::web::WebResponse), Taxii21Error> {
        let options = GetOptions {
            headers: vec![("Accept", ACCEPT.to_string())],
            ..GetOptions::default()
        };
        let response = self.web.get(url, &options).await?;
        let value = serde_json::from_slice(&response.body).map_err(|e| Taxii21Error::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok((value, response))
    }

    /// Reads the discovery document and each API root's collections. A URL
    /// that is itself an API root (no `api_roots` member) is listed as one.
    pub async fn discover(&self, url: &str) -> Result<Vec<ApiRoot>, Taxii21Error> {
        let (value, _) = self.get_json(url).await?;
        // Both documents require a title, so JSON without one is another
        // kind of API, not a TAXII server.
        if value.get("title").and_then(Value::as_str).is_none() {
            return Err(Taxii21Error::Json {
                url: url.to_string(),
                reason:
                    "no \"title\" member, so it is neither a discovery nor an API root document"
                        .to_string(),
            });
        }
        let roots: Vec<String> = match value.get("api_roots").and_then(Value::as_array) {
            Some(roots) => roots
                .iter()
                .filter_map(Value::as_str)
                .map(|root| resolve(url, root))
                .collect(),
            None => vec![url.to_string()],
        };
        let mut result = Vec::new();
        let home = origin(url);
        for root in roots {
            let root = if root.ends_with('/') {
                root
            } else {
                format!("{root}/")
            };
            if origin(&root) != home {
                // The credentials are only sent to the server that was asked.
                result.push(ApiRoot {
                    url: root,
                    title: String::new(),
                    collections: Vec::new(),
                    error: Some(
                        "on another server than the discovery URL, so it was not queried with these credentials; run discover on it directly".to_string(),
                    ),
                });
                continue;
            }
            let title = match self.get_json(&root).await {
                Ok((info, _)) => info
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Err(_) => String::new(),
            };
            match self.collections(&root).await {
                Ok(collections) => result.push(ApiRoot {
                    url: root,
                    title,
                    collections,
                    error: None,
                }),
                Err(error) => result.push(ApiRoot {
                    url: root,
                    title,
                    collections: Vec::new(),
                    error: Some(error.to_string()),
                }),
            }
        }
        Ok(result)
    }

    /// Lists the collections of an API root.
    pub async fn collections(&self, api_root: &str) -> Result<Vec<Collection>, Taxii21Error> {
        let url = format!("{api_root}collections/");
        let (value, _) = self.get_json(&url).await?;
        let list = value
            .get("collections")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|c| {
                Some(Collection {
                    id: c.get("id")?.as_str()?.to_string(),
                    title: c
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    can_read: c.get("can_read").and_then(Value::as_bool).unwrap_or(true),
                })
            })
            .collect())
    }

    /// The collection id for a configured id or title.
    pub async fn resolve_collection(
        &self,
        api_root: &str,
        collection: &str,
    ) -> Result<String, Taxii21Error> {
        let looks_like_id = collection.len() == 36 && collection.matches('-').count() == 4;
        if looks_like_id {
            return Ok(collection.to_string());
        }
        let collections = self.collections(api_root).await?;
        collections
            .into_iter()
            .find(|c| c.id == collection || c.title == collection)
            .map(|c| c.id)
            .ok_or_else(|| Taxii21Error::NoCollection {
                api_root: api_root.to_string(),
                collection: collection.to_string(),
            })
    }

    /// Fetches every object added after `added_after`, page by page.
    pub async fn objects(
        &self,
        api_root: &str,
        collection_id: &str,
        added_after: Option<DateTime<Utc>>,
        page_size: u32,
        max_pages: u32,
        source: &str,
    ) -> Result<ObjectsResult, Taxii21Error> {
        let base = format!("{api_root}collections/{collection_id}/objects/");
        let mut result = ObjectsResult::default();
        let mut after = added_after;
        let mut next: Option<String> = None;
        let mut seen_pages: HashSet<[u8; 32]> = HashSet::new();
        loop {
            if result.pages >= max_pages {
                return Err(Taxii21Error::TooManyPages {
                    url: base,
                    max: max_pages,
                });
            }
            let query = {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                query.append_pair("limit", &page_size.to_string());
                if let Some(after) = after {
                    query.append_pair("added_after", &format_time(after));
                }
                if let Some(next) = &next {
                    query.append_pair("next", next);
                }
                query.finish()
            };
            let url = format!("{base}?{query}");
            let (value, response) = self.get_json(&url).await?;
            result.pages += 1;

            let digest: [u8; 32] = {
                use sha2::Digest;
                sha2::Sha256::digest(&response.body).into()
            };
            if !seen_pages.insert(digest) {
                return Err(Taxii21Error::Repeated {
                    url: base,
                    page: result.pages,
                });
            }

            let objects = value
                .get("objects")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            result.objects.absorb(stix2::parse_objects(objects, source));
            let last = response
                .header("X-TAXII-Date-Added-Last")
                .and_then(parse_time);
            if last.is_some() {
                result.date_added_last = result.date_added_last.max(last);
            }

            let more = value.get("more").and_then(Value::as_bool).unwrap_or(false);
            if !more || objects.is_empty() {
                break;
            }
            match value.get("next").and_then(Value::as_str) {
                // The same filters go with `next`.
                Some(token) => next = Some(token.to_string()),
                None => match last {
                    Some(last) if Some(last) != after => {
                        next = None;
                        after = Some(last);
                    }
                    _ => break,
                },
            }
        }
        Ok(result)
    }
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

/// Resolves a possibly relative API root against the discovery URL.
fn resolve(base: &str, root: &str) -> String {
    match url::Url::parse(base).and_then(|b| b.join(root)) {
        Ok(url) => url.to_string(),
        Err(_) => root.to_string(),
    }
}
