//! The HTTP client of one TAXII 1.1 source: rustls with certificate
//! verification always on, an optional extra CA, an optional proxy, a
//! per-request timeout, basic authentication and a body size cap enforced
//! while the body streams in. The client settings, the body reading and the
//! errors are shared with the GET client in `web`.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::error_page;
use crate::config::Taxii11Source;

/// An error of one HTTP request. No variant carries the password.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("invalid proxy {proxy:?}: {reason}")]
    Proxy { proxy: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The message leaves out `username`, because AlienVault OTX takes the
    /// API key as the user name.
    #[error("cannot read the feed password: {reason}")]
    Password { username: String, reason: String },
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    /// `reason` is a one-line summary of the response body, or the status's
    /// standard reason phrase when the body gives none.
    #[error("{url} answered HTTP {status}: {reason}{}", status_advice(*status))]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("response of {url} is larger than max_bytes = {max_bytes}; raise max_bytes or shorten poll_segment")]
    TooLarge { url: String, max_bytes: u64 },
    #[error("response of {url} is not UTF-8: {reason}")]
    Encoding { url: String, reason: String },
    #[error("cannot read the client certificate {cert} or key {key}: {reason}")]
    ClientCert {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("cannot read the API key of header {header}: {reason}")]
    ApiKey { header: String, reason: String },
    #[error("{url} answered with an empty body; the last good set is kept")]
    Empty { url: String },
    #[error("response of {url} was cut off after {received} of {expected} bytes (Content-Length); the server or the network closed the connection early")]
    Truncated {
        url: String,
        received: u64,
        expected: u64,
    },
}

/// Returns what to check after a feed server responded with the error
/// `status`, or an empty string when there is no usual cause.
fn status_advice(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            "; check the source's credentials (username and password, api_key, or client_cert)"
        }
        407 => "; check the user name and password in the source's proxy URL",
        404 | 410 => "; check the source's url, path or collection",
        500..=599 => "; the server failed, so a later poll may succeed",
        _ => "",
    }
}

/// Returns [`HttpError::Truncated`] when reading a body failed, other than by
/// a timeout, before the `expected` bytes of its Content-Length arrived.
fn truncated(
    url: &str,
    error: &reqwest::Error,
    received: usize,
    expected: Option<u64>,
) -> Option<HttpError> {
    let expected = expected?;
    let received = u64::try_from(received).ok()?;
    let cut_off = !error.is_timeout() && received < expected;
    cut_off.then(|| HttpError::Truncated {
        url: url.to_string(),
        received,
        expected,
    })
}

/// Reads the body of a response from `url` and returns it when the status
/// is 2xx.
///
/// The cap of `max_bytes` applies before the body is read (Content-Length)
/// and while it streams in, so a larger body ends with
/// [`HttpError::TooLarge`] without being held whole. Another status returns
/// [`HttpError::Status`] with a one-line reason taken from the body (see
/// [`error_page::reason`]).
pub(super) async fn read_success_body(
    mut response: reqwest::Response,
    url: &str,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::TooLarge {
        url: url.to_string(),
        max_bytes,
    };
    let expected = response.content_length();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    if expected.is_some_and(|length| length > max_bytes) {
        return Err(too_large());
    }

    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        truncated(url, &e, body.len(), expected).unwrap_or_else(|| request_error(url, timeout, &e))
    })? {
        let total = u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX);
        if total > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    let status = response.status();
    if !status.is_success() {
        let mut reason = error_page::reason(&body, content_type.as_deref());
        if reason.is_empty() {
            reason = status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string();
        }
        return Err(HttpError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            reason,
        });
    }
    Ok(body)
}

/// Converts a failed request to `url` into [`HttpError::Timeout`] or
/// [`HttpError::Request`] with the whole error chain.
pub(super) fn request_error(url: &str, timeout: Duration, error: &reqwest::Error) -> HttpError {
    if error.is_timeout() {
        return HttpError::Timeout {
            url: url.to_string(),
            timeout,
        };
    }
    // The configured password and API key go in request headers, never in
    // the URL, so the error chain does not contain them.
    HttpError::Request {
        url: url.to_string(),
        reason: error_chain(error),
    }
}

/// Joins an error and its sources with `": "`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        chain.push_str(": ");
        chain.push_str(&inner.to_string());
        cause = inner.source();
    }
    chain
}

/// Returns a client builder with the settings that every feed client
/// shares: rustls with certificate verification on, `timeout` for the
/// connection and for each request, no redirects, the extra CA certificates
/// of `ca_file`, and `proxy` or else no proxy at all.
pub(super) fn client_builder(
    timeout: Duration,
    ca_file: Option<&Path>,
    proxy: Option<&str>,
) -> Result<reqwest::ClientBuilder, HttpError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A redirect is reported as an error, because following it could
        // send the credentials to another host.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ioc-milter/", env!("CARGO_PKG_VERSION")));

    if let Some(path) = ca_file {
        let ca_error = |reason: String| HttpError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error(
                "no PEM certificate found; give a PEM file".to_string(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }

    if let Some(proxy) = proxy {
        let setting = reqwest::Proxy::all(proxy).map_err(|e| HttpError::Proxy {
            proxy: proxy.to_string(),
            reason: e.to_string(),
        })?;
        builder = builder.proxy(setting);
    } else {
        // Without a configured proxy, HTTP_PROXY and HTTPS_PROXY are
        // ignored, so the configuration alone decides the route.
        builder = builder.no_proxy();
    }
    Ok(builder)
}

/// Builds the client, with the whole error chain in the error.
pub(super) fn build_client(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, HttpError> {
    builder
        .build()
        .map_err(|error| HttpError::Client(error_chain(&error)))
}

/// A configured client for one source.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    url: String,
    timeout: Duration,
    max_bytes: u64,
    username: Option<String>,
    password: Option<crate::config::Secret>,
}

impl HttpClient {
    /// Builds the client for a TAXII 1.1 source.
    pub fn new(
        source: &Taxii11Source,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<HttpClient, HttpError> {
        let builder = client_builder(timeout, source.ca_file.as_deref(), source.proxy.as_deref())?;
        let client = build_client(builder)?;
        Ok(HttpClient {
            client,
            url: source.poll_url(),
            timeout,
            max_bytes,
            username: source.username.clone(),
            password: source.password.clone(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `body` with `headers` and returns the response body. HTTP
    /// statuses other than 2xx are errors.
    pub async fn post(&self, headers: &[(&str, &str)], body: String) -> Result<String, HttpError> {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(HttpError::Client(format!("invalid header {name}: {value}")));
            };
            header_map.insert(name, value);
        }

        let mut request = self.client.post(&self.url).headers(header_map).body(body);
        if let Some(username) = &self.username {
            let password = match &self.password {
                Some(secret) => Some(secret.reveal().map_err(|reason| HttpError::Password {
                    username: username.clone(),
                    reason,
                })?),
                None => None,
            };
            request = request.basic_auth(username, password);
        }

        let response = request
            .send()
            .await
            .map_err(|e| request_error(&self.url, self.timeout, &e))?;
        let body = read_success_body(response, &self.url, self.max_bytes, self.timeout).await?;
        String::from_utf8(body).map_err(|e| HttpError::Encoding {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_name_next_step() {
        let cases = [
            (401, "http://127.0.0.1/feed answered HTTP 401: denied; check the source's credentials (username and password, api_key, or client_cert)"),
            (404, "http://127.0.0.1/feed answered HTTP 404: denied; check the source's url, path or collection"),
            (502, "http://127.0.0.1/feed answered HTTP 502: denied; the server failed, so a later poll may succeed"),
            (418, "http://127.0.0.1/feed answered HTTP 418: denied"),
        ];
        for (status, expected) in cases {
            let error = HttpError::Status {
                url: "http://127.0.0.1/feed".to_string(),
                status,
                reason: "denied".to_string(),
            };
            assert_eq!(error.to_string(), expected);
        }
    }
}
