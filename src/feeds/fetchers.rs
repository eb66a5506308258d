//! Fetching of the `taxii21`, `otx`, `text`, `csv` and `misp` kinds, over
//! HTTP(S) or from a local path. Each returns a [`Fetch`] that the manager
//! merges into the source's set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::http::HttpError;
use super::lists::{self, CsvMapping};
use super::misp;
use super::otx;
use super::stix1::ParseOutcome;
use super::stix2::StixObject;
use super::taxii21::{Taxii21Client, Taxii21Error};
use super::web::{GetOptions, Validators, WebClient};
use crate::config::{CsvSource, ListSource, Location, OtxSource, SourceConfig};

/// An error of one fetch of these kinds.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Taxii21(#[from] Taxii21Error),
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is larger than max_bytes = {max_bytes}; raise max_bytes or split the file")]
    TooLarge { path: PathBuf, max_bytes: u64 },
    #[error("{path} is empty; the last good set is kept")]
    EmptyFile { path: PathBuf },
    #[error("cannot parse {location}: {reason}")]
    Parse { location: String, reason: String },
    #[error("more than max_parts = {max} pages or events from {location}; raise max_parts")]
    TooManyParts { location: String, max: u32 },
    #[error("page {page} from {location} repeats an earlier page; the server is looping, so the poll stops")]
    Repeated { location: String, page: u32 },
    #[error("next page {next} is on another server than {base}; the API key is not sent there")]
    OtherHost { next: String, base: String },
}

/// The result of one fetch.
#[derive(Debug, Default)]
pub struct Fetch {
    pub outcome: ParseOutcome,
    pub blocks: u64,
    /// TAXII 2.1 objects, merged by id and `modified`.
    pub stix_objects: Option<Vec<StixObject>>,
    /// Indicators of these containers (OTX pulses) are replaced.
    pub replace_packages: HashSet<String>,
    /// The content is the same as the last good one: keep the set.
    pub not_modified: bool,
    pub validators: Option<Validators>,
    pub content_hash: Option<String>,
    pub cursor: Option<DateTime<Utc>>,
    /// Indicators skipped as inactive or expired by the feed.
    pub inactive: u64,
}

fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The validators and content hash of the last good fetch.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub validators: Validators,
    pub content_hash: Option<String>,
    /// Dry runs ignore the previous state, so they always parse.
    pub ignore: bool,
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let read_error = |e: std::io::Error| FetchError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > max_bytes {
        return Err(FetchError::TooLarge {
            path: path.to_path_buf(),
            max_bytes,
        });
    }
    let body = std::fs::read(path).map_err(read_error)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FetchError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(body)
}

fn utf8(location: &str, body: Vec<u8>) -> Result<String, FetchError> {
    String::from_utf8(body).or_else(|e| {
        // Feeds in Latin-1 still parse: non-ASCII bytes only appear in
        // comments and titles.
        let bytes = e.into_bytes();
        if !bytes.is_empty() {
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        } else {
            Err(FetchError::Parse {
                location: location.to_string(),
                reason: "empty body".to_string(),
            })
        }
    })
}

/// Fetches a whole document: a conditional GET or a file read. Returns
/// `None` when it did not change since the last good fetch.
async fn fetch_document(
    web: Option<&WebClient>,
    location: &Location,
    max_bytes: u64,
    previous: &Previous,
    fetch: &mut Fetch,
) -> Result<Option<String>, FetchError> {
    let (body, name) = match location {
        Location::Path(path) => {
            let path = path.clone();
            let body = tokio::task::spawn_blocking(move || read_file(&path, max_bytes))
                .await
                .map_err(|e| FetchError::Read {
                    path: PathBuf::new(),
                    reason: e.to_string(),
                })??;
            (body, location.host())
        }
        Location::Url(url) => {
            let Some(web) = web else {
                return Err(FetchError::Http(HttpError::Client(
                    "no HTTP client for a URL source".to_string(),
                )));
            };
            let options = GetOptions {
                validators: (!previous.ignore).then_some(&previous.validators),
                ..GetOptions::default()
            };
            let response = web.get(url, &options).await?;
            if response.not_modified {
                tracing::info!(%url, "not modified since the last poll (HTTP 304)");
                fetch.not_modified = true;
                return Ok(None);
            }
            if response.body.iter().all(u8::is_ascii_whitespace) {
                return Err(HttpError::Empty { url: url.clone() }.into());
            }
            fetch.validators = Some(response.validators.clone());
            (response.body, url.clone())
        }
    };
    let hash = digest(&body);
    if !previous.ignore && previous.content_hash.as_deref() == Some(hash.as_str()) {
        tracing::info!(location = %name, "content unchanged since the last poll");
        fetch.not_modified = true;
        return Ok(None);
    }
    fetch.content_hash = Some(hash);
    fetch.blocks = 1;
    utf8(&name, body).map(Some)
}

/// `text`.
pub async fn text(
    web: Option<&WebClient>,
    config: &SourceConfig,
    source: &ListSource,
    previous: &Previous,
) -> Result<Fetch, FetchError> {
    let mut fetch = Fetch::default();
    if let Some(body) = fetch_document(
        web,
        &source.location,
        config.max_bytes,
        previous,
        &mut fetch,
    )
    .await?
    {
        let location = source.location.host();
        reject_html_page(&location, &body)?;
        fetch.outcome = lists::parse_text(&body, &config.name, source.indicator_type);
        reject_all_invalid(&location, &fetch.outcome)?;
    }
    Ok(fetch)
}

/// Returns an error for a list body that is an HTML page, such as a login
/// or maintenance page served with status 200, so the last good set is
/// kept. Its lines would otherwise all be invalid and empty the set.
fn reject_html_page(location: &str, body: &str) -> Result<(), FetchError> {
    let head = body.trim_start();
    let head = head.get(..head.len().min(1024)).unwrap_or(head);
    let lower = head.to_ascii_lowercase();
    let is_page =
        lower.starts_with("<!doctype html") || (lower.starts_with('<') && lower.contains("<html"));
    if !is_page {
        return Ok(());
    }
    let title = super::error_page::reason(body.as_bytes(), Some("text/html"));
    let title = if title.is_empty() {
        String::new()
    } else {
        format!(" (\"{title}\")")
    };
    Err(FetchError::Parse {
        location: location.to_string(),
        reason: format!(
            "the body is an HTML page{title}, not a list; check the source's url or path and its credentials"
        ),
    })
}

/// Returns an error for a list body in which no value is a valid indicator
/// while some are invalid, so the last good set is kept. A list that is
/// valid but empty (only comments) still replaces the set.
fn reject_all_invalid(location: &str, outcome: &ParseOutcome) -> Result<(), FetchError> {
    let invalid = outcome.counts.invalid;
    if !outcome.indicators.is_empty() || invalid == 0 {
        return Ok(());
    }
    Err(FetchError::Parse {
        location: location.to_string(),
        reason: format!(
            "none of its {invalid} values is a valid indicator; check that the source's url or path gives the list and that indicator_type or column fits it"
        ),
    })
}

/// `csv`.
pub async fn csv(
    web: Option<&WebClient>,
    config: &SourceConfig,
    source: &CsvSource,
    previous: &Previous,
) -> Result<Fetch, FetchError> {
    let mut fetch = Fetch::default();
    if let Some(body) = fetch_document(
        web,
        &source.list.location,
        config.max_bytes,
        previous,
        &mut fetch,
    )
    .await?
    {
        reject_html_page(&source.list.location.host(), &body)?;
        let mapping = CsvMapping {
            column: source.column.clone(),
            kind: source.list.indicator_type,
            type_column: source.type_column.clone(),
            id_column: source.id_column.clone(),
            delimiter: source.delimiter,
        };
        fetch.outcome = lists::parse_csv(&body, &config.name, &mapping).map_err(|reason| {
            FetchError::Parse {
                location: source.list.location.host(),
                reason,
            }
        })?;
        reject_all_invalid(&source.list.location.host(), &fetch.outcome)?;
    }
    Ok(fetch)
}

/// `misp`: the manifest, then each listed event. A local directory
/// without a manifest is read as every `*.json` file in it.
pub async fn misp(
    web: Option<&WebClient>,
    config: &SourceConfig,
    source: &ListSource,
    previous: &Previous,
) -> Result<Fetch, FetchError> {
    let mut fetch = Fetch::default();
    let location_name = source.location.host();
    let parse_error = |reason: String| FetchError::Parse {
        location: location_name.clone(),
        reason,
    };
    match &source.location {
        Location::Path(path) if !path.is_dir() => {
            if let Some(body) = fetch_document(
                web,
                &source.location,
                config.max_bytes,
                previous,
                &mut fetch,
            )
            .await?
            {
                fetch.outcome = misp::parse_event(&body, &config.name).map_err(parse_error)?;
            }
        }
        Location::Path(dir) => {
            let manifest = dir.join("manifest.json");
            let files: Vec<PathBuf> = if manifest.is_file() {
                let body = read_file(&manifest, config.max_bytes)?;
                let body = utf8(&location_name, body)?;
                misp::parse_manifest(&body)
                    .map_err(parse_error)?
                    .into_iter()
                    .map(|uuid| dir.join(format!("{uuid}.json")))
                    .collect()
            } else {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| FetchError::Read {
                        path: dir.clone(),
                        reason: e.to_string(),
                    })?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
                    .collect();
                files.sort();
                files
            };
            check_parts(files.len(), config, &location_name)?;
            for file in files {
                let body = utf8(&location_name, read_file(&file, config.max_bytes)?)?;
                let outcome =
                    misp::parse_event(&body, &config.name).map_err(|reason| FetchError::Parse {
                        location: file.display().to_string(),
                        reason,
                    })?;
                fetch.outcome.absorb(outcome);
                fetch.blocks += 1;
            }
        }
        Location::Url(url) => {
            let (manifest_url, base) = if url.ends_with(".json") {
                let base = url
                    .rfind('/')
                    .and_then(|i| url.get(..=i))
                    .unwrap_or(url)
                    .to_string();
                (url.clone(), base)
            } else {
                let base = if url.ends_with('/') {
                    url.clone()
                } else {
                    format!("{url}/")
                };
                (format!("{base}manifest.json"), base)
            };
            let manifest_location = Location::Url(manifest_url);
            let Some(body) = fetch_document(
                web,
                &manifest_location,
                config.max_bytes,
                previous,
                &mut fetch,
            )
            .await?
            else {
                return Ok(fetch);
            };
            let uuids = misp::parse_manifest(&body).map_err(parse_error)?;
            check_parts(uuids.len(), config, &location_name)?;
            let Some(web) = web else {
                return Ok(fetch);
            };
            fetch.blocks = 0;
            for uuid in uuids {
                let event_url = format!("{base}{uuid}.json");
                let response = web.get(&event_url, &GetOptions::default()).await?;
                if response.body.iter().all(u8::is_ascii_whitespace) {
                    return Err(HttpError::Empty { url: event_url }.into());
                }
                let body = utf8(&event_url, response.body)?;
                let outcome =
                    misp::parse_event(&body, &config.name).map_err(|reason| FetchError::Parse {
                        location: event_url.clone(),
                        reason,
                    })?;
                fetch.outcome.absorb(outcome);
                fetch.blocks += 1;
            }
        }
    }
    Ok(fetch)
}

fn check_parts(count: usize, config: &SourceConfig, location: &str) -> Result<(), FetchError> {
    if u64::try_from(count).unwrap_or(u64::MAX) > u64::from(config.max_parts) {
        return Err(FetchError::TooManyParts {
            location: location.to_string(),
            max: config.max_parts,
        });
    }
    Ok(())
}

fn origin(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    Some(format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str()?,
        url.port_or_known_default()?
    ))
}

fn with_limit(url: &str, limit: u32) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "limit")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        query.append_pair("limit", &limit.to_string());
    }
    parsed.to_string()
}

/// Fetches the subscribed OTX pulses modified since `since`, page by page.
/// An HTTP 504 response halves the page size and repeats the request.
pub async fn otx(
    web: Option<&WebClient>,
    config: &SourceConfig,
    source: &OtxSource,
    since: Option<DateTime<Utc>>,
    previous: &Previous,
    now: DateTime<Utc>,
) -> Result<Fetch, FetchError> {
    let mut fetch = Fetch::default();
    let base = match &source.location {
        Location::Path(_) => {
            if let Some(body) = fetch_document(
                web,
                &source.location,
                config.max_bytes,
                previous,
                &mut fetch,
            )
            .await?
            {
                let page = otx::parse_page(&body, &config.name, now).map_err(|reason| {
                    FetchError::Parse {
                        location: source.location.host(),
                        reason,
                    }
                })?;
                fetch.outcome = page.outcome;
                fetch.inactive = page.inactive;
            }
            return Ok(fetch);
        }
        Location::Url(url) => url.trim_end_matches('/').to_string(),
    };
    let Some(web) = web else {
        return Ok(fetch);
    };
    let base_origin = origin(&base).unwrap_or_default();
    let query = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        if let Some(since) = since {
            query.append_pair("modified_since", &super::taxii21::format_time(since));
        }
        query.finish()
    };
    let mut next_url = Some(format!("{base}/api/v1/pulses/subscribed?{query}"));
    let mut limit = source.page_size.max(1);
    let mut seen: HashSet<String> = HashSet::new();
    let mut pages: u32 = 0;
    while let Some(url) = next_url.take() {
        if pages >= config.max_parts {
            return Err(FetchError::TooManyParts {
                location: base,
                max: config.max_parts,
            });
        }
        let request_url = with_limit(&url, limit);
        let options = GetOptions {
            no_retry_status: Some(504),
            ..GetOptions::default()
        };
        let response = match web.get(&request_url, &options).await {
            Err(HttpError::Status { status: 504, .. }) if limit > 1 => {
                limit = (limit / 2).max(1);
                tracing::warn!(source = %config.name, limit, "OTX returned HTTP 504; requesting the page again with a smaller limit");
                next_url = Some(url);
                continue;
            }
            other => other?,
        };
        pages += 1;
        let body_hash = digest(&response.body);
        if !seen.insert(body_hash) {
            return Err(FetchError::Repeated {
                location: base,
                page: pages,
            });
        }
        let body = utf8(&request_url, response.body)?;
        let page =
            otx::parse_page(&body, &config.name, now).map_err(|reason| FetchError::Parse {
                location: request_url.clone(),
                reason,
            })?;
        fetch.blocks += 1;
        fetch.inactive += page.inactive;
        fetch.replace_packages.extend(page.pulses);
        fetch.outcome.absorb(page.outcome);
        if let Some(next) = page.next.filter(|n| !n.is_empty()) {
            if origin(&next).as_deref() != Some(base_origin.as_str()) {
                return Err(FetchError::OtherHost { next, base });
            }
            next_url = Some(next);
        }
    }
    fetch.cursor = Some(now);
    Ok(fetch)
}

/// `taxii21`: objects added after `since`.
pub async fn taxii21(
    client: &Taxii21Client,
    config: &SourceConfig,
    source: &crate::config::Taxii21Source,
    collection_id: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Fetch, FetchError> {
    let result = client
        .objects(
            &source.api_root,
            collection_id,
            since,
            source.page_size,
            config.max_parts,
            &config.name,
        )
        .await?;
    let mut outcome = result.objects.outcome;
    outcome.indicators.clear();
    Ok(Fetch {
        outcome,
        blocks: u64::from(result.pages),
        stix_objects: Some(result.objects.objects),
        cursor: result.date_added_last.or(since),
        ..Fetch::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_replaced() {
        assert_eq!(
            with_limit("http://127.0.0.1:1/p?limit=50&page=2", 25),
            "http://127.0.0.1:1/p?page=2&limit=25"
        );
    }

    #[test]
    fn origin_has_port() {
        assert_eq!(
            origin("https://otx.example/api").as_deref(),
            Some("https://otx.example:443")
        );
    }
}
