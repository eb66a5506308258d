//! `discover` against a TAXII 1.1 stub on 127.0.0.1 and, when
//! `IOC_MILTER_TAXII21_URL` is set, the binary against medallion.

use std::time::Duration;

use ioc_milter::config::HttpSettings;
use ioc_milter::feeds::discover::{self, Discovery};
use ioc_milter::feeds::web::WebClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
                    r#"{"api_roots": ["http://other.invalid/api1/"]}"#.to_string(),
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
