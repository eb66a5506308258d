//! `discover` against a TAXII 1.1 stub on 127.0.0.1, the binary against a
//! stub whose responses are HTTP error pages and, when
//! `IOC_MILTER_TAXII21_URL` is set, the binary against medallion.

use std::time::Duration;

use ioc_milter::config::HttpSettings;
use ioc_milter::feeds::discover::{self, Discovery};
use ioc_milter::feeds::web::WebClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

const DISCOVERY: &str = r#"<taxii_11:Discovery_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="1" in_response_to="2">
  <taxii_11:Service_Instance service_type="COLLECTION_MANAGEMENT" service_version="urn:taxii.mitre.org:services:1.1" available="true">
    <taxii_11:Address>http://127.0.0.1:PORT/taxii/collections</taxii_11:Address>
  </taxii_11:Service_Instance>
  <taxii_11:Service_Instance service_type="POLL" service_version="urn:taxii.mitre.org:services:1.1" available="true">
    <taxii_11:Address>http://127.0.0.1:PORT/taxii/poll</taxii_11:Address>
  </taxii_11:Service_Instance>
</taxii_11:Discovery_Response>"#;

const COLLECTIONS: &str = r#"<taxii_11:Collection_Information_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_binding-1.1" message_id="3" in_response_to="4">
  <taxii_11:Collection collection_name="user_tester" collection_type="DATA_FEED" available="true">
    <taxii_11:Description>Pulses of one test user</taxii_11:Description>
    <taxii_11:Polling_Service><taxii_11:Address>http://127.0.0.1:PORT/taxii/poll</taxii_11:Address></taxii_11:Polling_Service>
  </taxii_11:Collection>
</taxii_11:Collection_Information_Response>"#;

/// Returns whether `data` contains the whole request: the head and a body of
/// Content-Length bytes.
fn request_complete(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let Some(split) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|value| value.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    data.len() >= split + 4 + length
}

/// Starts a stub that returns HTTP 406 to TAXII 2.1 GETs and serves TAXII
/// 1.1 POSTs by path.
async fn taxii11_stub() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..10 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buffer = vec![0u8; 16384];
            let mut data = Vec::new();
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                data.extend_from_slice(&buffer[..read]);
                if request_complete(&data) {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&data).to_string();
            let (status, body) = if text.starts_with("GET /taxii2/") {
                // An API root on another server, which must not be queried.
                (
                    200,
                    r#"{"title": "Stub TAXII 2.1 server", "api_roots": ["http://other.invalid/api1/"]}"#.to_string(),
                )
            } else if text.starts_with("GET ") {
                (406, "not acceptable".to_string())
            } else if text.starts_with("POST /taxii/discovery") {
                (200, DISCOVERY.replace("PORT", &port.to_string()))
            } else if text.starts_with("POST /taxii/collections") {
                (200, COLLECTIONS.replace("PORT", &port.to_string()))
            } else {
                (404, "not found".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    port
}

#[tokio::test]
async fn taxii11_services_and_collections() {
    let port = taxii11_stub().await;
    let web = WebClient::new(&HttpSettings::default(), Duration::from_secs(5), 1_000_000).unwrap();
    let url = format!("http://127.0.0.1:{port}/taxii/discovery");
    let discovery = discover::discover(&web, &url).await.unwrap();
    let Discovery::Taxii11 {
        services,
        collections,
        errors,
    } = discovery
    else {
        panic!("not TAXII 1.1: {discovery:?}");
    };
    let types: Vec<&str> = services.iter().map(|s| s.service_type.as_str()).collect();
    assert_eq!(types, ["COLLECTION_MANAGEMENT", "POLL"]);
    let names: Vec<&str> = collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["user_tester"]);
    assert_eq!(errors.len(), 0);
}

#[tokio::test]
async fn taxii21_other_server_skipped() {
    let port = taxii11_stub().await;
    let web = WebClient::new(&HttpSettings::default(), Duration::from_secs(5), 1_000_000).unwrap();
    let url = format!("http://127.0.0.1:{port}/taxii2/");
    let discovery = discover::discover(&web, &url).await.unwrap();
    let Discovery::Taxii21 { api_roots } = discovery else {
        panic!("not TAXII 2.1: {discovery:?}");
    };
    assert_eq!(api_roots.len(), 1);
    let root = api_roots.first().unwrap();
    assert_eq!(root.url, "http://other.invalid/api1/");
    assert!(root
        .error
        .as_deref()
        .is_some_and(|e| e.contains("not queried with these credentials")));
}

/// One reply of [`error_stub`]: status, Content-Type and body.
type Reply = (u16, &'static str, String);

/// Starts a server on 127.0.0.1 that responds to the first `replies.len()`
/// requests with `replies` in order, one connection each, and returns its
/// port.
fn error_stub(replies: Vec<Reply>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (status, content_type, body) in replies {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buffer = vec![0u8; 16384];
            let mut data = Vec::new();
            while let Ok(read) = std::io::Read::read(&mut stream, &mut buffer) {
                if read == 0 {
                    break;
                }
                data.extend_from_slice(&buffer[..read]);
                if request_complete(&data) {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, response.as_bytes());
        }
    });
    port
}

/// Runs `ioc-milter discover URL` and returns its exit status and standard
/// error; standard output must stay empty.
fn discover_failure(url: &str) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .args(["discover", url])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

const NGINX_404: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

const PATH_HINT: &str = "check that the URL is the server's discovery path, e.g. https://HOST/taxii2/ for TAXII 2.1 or https://HOST/taxii/discovery for TAXII 1.1, and the credentials if the server needs them";

#[test]
fn cli_not_found_pages() {
    let port = error_stub(vec![
        (404, "text/html", NGINX_404.to_string()),
        (404, "text/html", NGINX_404.to_string()),
    ]);
    let url = format!("http://127.0.0.1:{port}/wrong/path");
    let (code, stderr) = discover_failure(&url);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!("ioc-milter: error: cannot discover {url}: TAXII 2.1 GET: HTTP 404 (404 Not Found); TAXII 1.1 POST: HTTP 404 (404 Not Found); {PATH_HINT}\n")
    );
}

#[test]
fn cli_server_error_page() {
    // A page without a title whose first line of text is longer than the
    // 200 characters a reason keeps.
    let words = "The TAXII service failed while it read its database. ".repeat(5);
    let page = format!(
        "<!DOCTYPE html>\n<html><head><style>p {{ color: red }}</style></head>\n<body><p>{words}</p>\n<p>Trace id 1234</p></body></html>\n"
    );
    let port = error_stub(vec![
        (404, "text/html", NGINX_404.to_string()),
        (500, "text/html; charset=utf-8", page),
    ]);
    let url = format!("http://127.0.0.1:{port}/taxii/discovery");
    let (code, stderr) = discover_failure(&url);
    let reason: String = words.chars().take(200).collect();
    assert_eq!(reason.len(), 200);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!("ioc-milter: error: cannot discover {url}: TAXII 2.1 GET: HTTP 404 (404 Not Found); TAXII 1.1 POST: HTTP 500 ({}...); the server failed; try again later or ask its operator, and check that the URL is the server's discovery path\n", reason.trim_end())
    );
}

#[test]
fn cli_unauthorized_responses() {
    let taxii21_error =
        r#"{"title": "Unauthorized", "description": "Give a user name and password."}"#;
    let port = error_stub(vec![
        (
            401,
            "application/taxii+json;version=2.1",
            taxii21_error.to_string(),
        ),
        (
            401,
            "text/html",
            "<html><head><title>401 Authorization Required</title></head><body>401</body></html>"
                .to_string(),
        ),
    ]);
    let url = format!("http://127.0.0.1:{port}/taxii2/");
    let (code, stderr) = discover_failure(&url);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!("ioc-milter: error: cannot discover {url}: TAXII 2.1 GET: HTTP 401 (Unauthorized: Give a user name and password.); TAXII 1.1 POST: HTTP 401 (401 Authorization Required); check the credentials: --username with --password-env or --password-file, or --api-key-env, or --client-cert and --client-key\n")
    );
}

#[test]
fn cli_other_json_rejected() {
    let port = error_stub(vec![
        (200, "application/json", r#"{"hello": "world"}"#.to_string()),
        (404, "text/html", NGINX_404.to_string()),
    ]);
    let url = format!("http://127.0.0.1:{port}/json/");
    let (code, stderr) = discover_failure(&url);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!("ioc-milter: error: cannot discover {url}: TAXII 2.1 GET: not TAXII 2.1 JSON (no \"title\" member, so it is neither a discovery nor an API root document); TAXII 1.1 POST: HTTP 404 (404 Not Found); {PATH_HINT}\n")
    );
}

#[test]
fn cli_url_without_scheme() {
    for url in ["127.0.0.1:9/taxii2/", "ftp://127.0.0.1/taxii2/"] {
        let (code, stderr) = discover_failure(url);
        assert_eq!(code, Some(2), "{url}");
        assert_eq!(
            stderr,
            format!("ioc-milter: error: invalid URL {url:?}: write the server's discovery URL with http:// or https://, e.g. https://HOST/taxii2/ or https://HOST/taxii/discovery\n")
        );
    }
}

#[test]
fn cli_connection_refused() {
    // A free port below the ephemeral range: the stubs of the tests running
    // beside this one bind port 0, so none of them takes it.
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/taxii2/");
    let (code, stderr) = discover_failure(&url);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("ioc-milter: error: request to {url} failed: ")),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("Connection refused (os error 111); check the host name and port in the URL, that the server runs, and --proxy\n"),
        "{stderr}"
    );
}

#[test]
fn cli_discovers_medallion() {
    let url = match std::env::var("IOC_MILTER_TAXII21_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            println!(
                "skipping: IOC_MILTER_TAXII21_URL is not set (scripts/peers/medallion.sh start)"
            );
            return;
        }
    };
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .args([
            "discover",
            &url,
            "--username",
            "milter",
            "--password-env",
            "MEDALLION_TEST_PASSWORD",
        ])
        .env("MEDALLION_TEST_PASSWORD", "milter-test-pass")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    assert!(text.contains("TAXII 2.1 server at"), "{text}");
    assert!(
        text.contains("collection 3c9e6f1a-2b7d-4e58-9a41-0d5f8c2e7b13 \"ioc-milter-test\""),
        "{text}"
    );
}

/// Runs against the OpenTAXII peer of `scripts/test-peers.sh` (collection
/// user_AlienVault, user otx-api-key-0001 with any password).
#[test]
fn cli_discovers_opentaxii() {
    if std::env::var_os("IOC_MILTER_E2E").is_none() {
        println!("skipping: IOC_MILTER_E2E is not set (run scripts/test.sh)");
        return;
    }
    let base = std::env::var("IOC_MILTER_TAXII11_URL").unwrap_or("http://127.0.0.1:9000".into());
    let url = format!("{}/taxii/discovery", base.trim_end_matches('/'));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ioc-milter"))
        .args(["discover", &url, "--username", "otx-api-key-0001"])
        .args(["--password-env", "OPENTAXII_TEST_PASSWORD"])
        .env("OPENTAXII_TEST_PASSWORD", "any")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("TAXII 1.1 server at"), "{text}");
    assert!(text.contains("service POLL"), "{text}");
    assert!(text.contains("collection user_AlienVault"), "{text}");
}
