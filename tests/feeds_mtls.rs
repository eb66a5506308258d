//! Client certificates (mutual TLS), a custom CA and an HTTPS feed through
//! a CONNECT proxy, against a Python `ssl` server on 127.0.0.1 that
//! requires a client certificate. The certificates are made with the
//! `openssl` command; the test prints a line and returns when `openssl` or
//! `python3` is missing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use ioc_milter::config;
use ioc_milter::feeds::manager::FeedManager;
use ioc_milter::store::Store;

const SERVER: &str = r#"
import http.server, ssl, sys
directory, ca, cert, key = sys.argv[1:5]
class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=directory, **kwargs)
    def log_message(self, *args):
        pass
httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

fn run(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client
/// certificate, all signed by the CA.
fn make_certificates(dir: &Path) -> bool {
    // Extensions make X.509 v3 certificates, which rustls requires.
    std::fs::write(dir.join("server.ext"), "subjectAltName = IP:127.0.0.1\n").is_ok()
        && std::fs::write(dir.join("client.ext"), "extendedKeyUsage = clientAuth\n").is_ok()
        && run(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        )
        && ["server", "client"].iter().all(|name| {
            run(
                dir,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            ) && run(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                    "-out",
                    &format!("{name}.pem"),
                ],
            )
        })
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path) -> Option<(Server, u16)> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .arg(dir.join("www"))
        .arg(dir.join("ca.pem"))
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok()?;
    let port = line.trim().parse().ok()?;
    Some((server, port))
}

fn manager(dir: &Path, port: u16, with_client_cert: bool) -> FeedManager {
    let client = if with_client_cert {
        format!(
            "client_cert = \"{0}/client.pem\"\nclient_key = \"{0}/client.key\"\n",
            dir.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        "[state]\ndirectory = \"{0}/state\"\n[[source]]\nname = \"isac\"\nkind = \"text\"\nurl = \"https://127.0.0.1:{port}/list.txt\"\nca_file = \"{0}/ca.pem\"\nretries = 0\ntimeout = \"5s\"\n{client}",
        dir.display()
    );
    let config = config::parse(&text, Path::new("test.toml"), dir).unwrap();
    FeedManager::new(config.sources, Store::open(dir.join("state")).unwrap()).unwrap()
}

/// Starts the server, or returns `None` (with a printed line) when the
/// tools are missing.
fn setup(dir: &Path) -> Option<(Server, u16)> {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/list.txt"), "192.0.2.80\nisac-bad.example\n").unwrap();
    if !make_certificates(dir) {
        println!("skipping: cannot make test certificates with openssl");
        return None;
    }
    let server = start_server(dir);
    if server.is_none() {
        println!("skipping: cannot start the python3 TLS server");
    }
    server
}

#[tokio::test]
async fn client_certificate_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, port)) = setup(dir.path()) else {
        return;
    };
    let feeds = manager(dir.path(), port, true);
    let report = feeds.poll("isac", None).await.unwrap();
    assert_eq!(report.counts.added, 2);
}

#[tokio::test]
async fn missing_certificate_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, port)) = setup(dir.path()) else {
        return;
    };
    let feeds = manager(dir.path(), port, false);
    let error = feeds.poll("isac", None).await.unwrap_err().to_string();
    assert!(error.contains("CertificateRequired"), "{error}");
    assert_eq!(feeds.indicators().len(), 0);
}

/// Starts a forward proxy on 127.0.0.1 that accepts one `CONNECT` per
/// connection and tunnels it to 127.0.0.1. Returns its port and the
/// request lines it received.
async fn start_connect_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = std::sync::Arc::clone(&record);
            tokio::spawn(async move {
                let mut client = tokio::io::BufReader::new(stream);
                let mut request = String::new();
                client.read_line(&mut request).await.ok()?;
                // Skips the request headers up to the blank line.
                loop {
                    let mut header = String::new();
                    if client.read_line(&mut header).await.ok()? == 0 || header == "\r\n" {
                        break;
                    }
                }
                record.lock().unwrap().push(request.trim_end().to_string());
                let target = request.split_whitespace().nth(1)?.to_string();
                let port = target.strip_prefix("127.0.0.1:")?;
                let mut upstream =
                    tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().ok()?))
                        .await
                        .ok()?;
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .ok()?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .ok()
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn https_through_connect_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_server, port)) = setup(dir.path()) else {
        return;
    };
    let (proxy_port, seen) = start_connect_proxy().await;
    let text = format!(
        "[state]\ndirectory = \"{0}/state\"\n[[source]]\nname = \"isac\"\nkind = \"text\"\nurl = \"https://127.0.0.1:{port}/list.txt\"\nproxy = \"http://127.0.0.1:{proxy_port}\"\nca_file = \"{0}/ca.pem\"\nclient_cert = \"{0}/client.pem\"\nclient_key = \"{0}/client.key\"\nretries = 0\ntimeout = \"5s\"\n",
        dir.path().display()
    );
    let config = config::parse(&text, Path::new("test.toml"), dir.path()).unwrap();
    let feeds = FeedManager::new(
        config.sources,
        Store::open(dir.path().join("state")).unwrap(),
    )
    .unwrap();

    let report = feeds.poll("isac", None).await.unwrap();
    assert_eq!(report.counts.added, 2);
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests, vec![format!("CONNECT 127.0.0.1:{port} HTTP/1.1")]);
}
