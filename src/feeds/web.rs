//! The HTTP(S) GET client of the `taxii21`, `otx`, `text`, `csv` and
//! `misp` kinds: certificate verification always on, an optional extra CA,
//! client certificates, basic authentication or an API key header, an
//! optional proxy, a per-request timeout, a body cap enforced while the
//! body streams in, conditional requests, and retries with exponential
//! backoff and jitter.

use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http::{build_client, client_builder, read_success_body, request_error, HttpError};
use crate::config::HttpSettings;

/// Validators of the last good response, sent back as `If-None-Match` and
/// `If-Modified-Since`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// A successful response, or `not_modified` for HTTP 304.
#[derive(Debug, Clone, Default)]
pub struct WebResponse {
    pub status: u16,
    pub not_modified: bool,
    pub body: Vec<u8>,
    pub validators: Validators,
    pub headers: HeaderMap,
}

impl WebResponse {
    /// Returns a response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Options of one GET.
#[derive(Debug, Clone, Default)]
pub struct GetOptions<'a> {
    pub headers: Vec<(&'a str, String)>,
    pub validators: Option<&'a Validators>,
    /// Statuses returned to the caller instead of being retried (OTX 504).
    pub no_retry_status: Option<u16>,
}

/// A configured client for one source.
#[derive(Debug, Clone)]
pub struct WebClient {
    client: reqwest::Client,
    settings: HttpSettings,
    timeout: Duration,
    max_bytes: u64,
}

impl WebClient {
    pub fn new(
        settings: &HttpSettings,
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<WebClient, HttpError> {
        let mut builder = client_builder(
            timeout,
            settings.ca_file.as_deref(),
            settings.proxy.as_deref(),
        )?;

        if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
            let cert_error = |reason: String| HttpError::ClientCert {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                reason,
            };
            let mut pem = std::fs::read(cert).map_err(|e| cert_error(e.to_string()))?;
            pem.push(b'\n');
            pem.extend(std::fs::read(key).map_err(|e| cert_error(e.to_string()))?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                cert_error(format!(
                    "{e}; give PEM files with one certificate chain and one private key"
                ))
            })?;
            builder = builder.identity(identity);
        }

        let client = build_client(builder)?;
        Ok(WebClient {
            client,
            settings: settings.clone(),
            timeout,
            max_bytes,
        })
    }

    /// GETs `url`, retrying network errors, timeouts and HTTP 5xx up to
    /// `retries` times.
    pub async fn get(&self, url: &str, options: &GetOptions<'_>) -> Result<WebResponse, HttpError> {
        self.send(url, options, None).await
    }

    /// POSTs `body` (TAXII 1.1 discovery), with the same retries as `get`.
    pub async fn post(
        &self,
        url: &str,
        options: &GetOptions<'_>,
        body: String,
    ) -> Result<WebResponse, HttpError> {
        self.send(url, options, Some(body)).await
    }

    async fn send(
        &self,
        url: &str,
        options: &GetOptions<'_>,
        body: Option<String>,
    ) -> Result<WebResponse, HttpError> {
        let mut attempt: u32 = 0;
        loop {
            let result = self.send_once(url, options, body.clone()).await;
            let retryable = match &result {
                Ok(_) => false,
                Err(HttpError::Status { status, .. }) => {
                    *status >= 500 && Some(*status) != options.no_retry_status
                }
                Err(HttpError::Timeout { .. })
                | Err(HttpError::Request { .. })
                | Err(HttpError::Truncated { .. }) => true,
                Err(_) => false,
            };
            if !retryable || attempt >= self.settings.retries {
                return result;
            }
            attempt += 1;
            let delay = backoff(self.settings.retry_delay, attempt);
            if let Err(error) = &result {
                tracing::info!(%url, %error, attempt, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "request failed; retrying");
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        url: &str,
        options: &GetOptions<'_>,
        body: Option<String>,
    ) -> Result<WebResponse, HttpError> {
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &str| -> Result<(), HttpError> {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(HttpError::Client(format!(
                    "invalid header {name}; check the configured header names and values"
                )));
            };
            headers.insert(name, value);
            Ok(())
        };
        for (name, value) in &options.headers {
            add(name, value)?;
        }
        if let Some(validators) = options.validators {
            if let Some(etag) = &validators.etag {
                add("If-None-Match", etag)?;
            }
            if let Some(modified) = &validators.last_modified {
                add("If-Modified-Since", modified)?;
            }
        }
        if let Some(api_key) = &self.settings.api_key {
            let value = api_key
                .secret
                .reveal()
                .map_err(|reason| HttpError::ApiKey {
                    header: api_key.header.clone(),
                    reason,
                })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| HttpError::ApiKey {
                header: api_key.header.clone(),
                reason: "the key contains characters not allowed in a header".to_string(),
            })?;
            value.set_sensitive(true);
            let name = HeaderName::from_bytes(api_key.header.as_bytes()).map_err(|e| {
                HttpError::ApiKey {
                    header: api_key.header.clone(),
                    reason: e.to_string(),
                }
            })?;
            headers.insert(name, value);
        }

        let mut request = match body {
            Some(body) => self.client.post(url).headers(headers).body(body),
            None => self.client.get(url).headers(headers),
        };
        if let Some(username) = &self.settings.username {
            let password = match &self.settings.password {
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
            .map_err(|e| request_error(url, self.timeout, &e))?;
        let status = response.status();
        let response_headers = response.headers().clone();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(WebResponse {
                status: 304,
                not_modified: true,
                headers: response_headers,
                ..WebResponse::default()
            });
        }
        let body = read_success_body(response, url, self.max_bytes, self.timeout).await?;
        let header_text = |name: reqwest::header::HeaderName| {
            response_headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok(WebResponse {
            status: status.as_u16(),
            not_modified: false,
            validators: Validators {
                etag: header_text(reqwest::header::ETAG),
                last_modified: header_text(reqwest::header::LAST_MODIFIED),
            },
            body,
            headers: response_headers,
        })
    }
}

/// `base * 2^(attempt-1)`, capped at 5 minutes, plus up to 25 % jitter.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    let delay = base.saturating_mul(factor).min(Duration::from_secs(300));
    let jitter_ms = u64::try_from(delay.as_millis() / 4).unwrap_or(0);
    let jitter = if jitter_ms > 0 {
        rand::rng().random_range(0..=jitter_ms)
    } else {
        0
    };
    delay + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles() {
        let base = Duration::from_secs(1);
        let first = backoff(base, 1);
        let third = backoff(base, 3);
        assert!(first >= Duration::from_secs(1));
        assert!(first <= Duration::from_millis(1250));
        assert!(third >= Duration::from_secs(4));
        assert!(third <= Duration::from_secs(5));
    }
}
