//! `lookup` of networks and values with a port, and `check` of files that
//! are not mail and with an assumed client IP or sender, as an
//! administrator runs them: the binary against a text list source polled
//! into a temporary state directory. No peers needed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_ioc-milter");

/// Returns the list polled by every test: networks that contain each other, single
/// addresses, IPv6, a domain, and 55 addresses in 203.0.113.0/24 to pass
/// the limit of 50 listed indicators inside a network.
fn list_text() -> String {
    let mut list = String::from(
        "198.51.0.0/16\n198.51.100.0/24\n198.51.100.7\n198.51.100.130\n\
         2001:db8::/32\n2001:db8:1::5\nevil.example.net\n",
    );
    // Written in descending order, so a listing by address is not just
    // the input order.
    for host in (1..=55).rev() {
        writeln!(list, "203.0.113.{host}").unwrap();
    }
    writeln!(list, "{}", hex::encode(Sha256::digest(SAVED_ATTACHMENT))).unwrap();
    list
}

/// A binary file whose SHA-256 is in the list, as an attachment saved from
/// a message.
const SAVED_ATTACHMENT: &[u8] = b"MZ\x90\x00\x03\x00saved attachment\xff\xfe";

/// A temporary directory with a configuration whose one source, a text
/// list, has been polled, so `lookup` and `check` find its indicators.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        std::fs::write(&list, list_text()).unwrap();
        let config = dir.path().join("offline.toml");
        // The milter never listens: these commands only read the state.
        std::fs::write(
            &config,
            format!(
                "[milter]\nlisten = \"inet:127.0.0.1:1\"\n[state]\ndirectory = \"{dir}/state\"\n[http]\nlisten = \"off\"\n\n[[source]]\nname = \"mylist\"\nkind = \"text\"\npath = \"{list}\"\n",
                dir = dir.path().display(),
                list = list.display()
            ),
        )
        .unwrap();
        let setup = Setup { dir, config };
        let output = setup.run(&["poll"]);
        assert!(output.status.success(), "poll failed: {output:?}");
        setup
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BINARY)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("the ioc-milter binary runs")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(output).trim()).expect("one JSON object")
}

/// Returns the `value` of each indicator of a JSON array, as the index
/// stores it.
fn values(indicators: &serde_json::Value) -> Vec<String> {
    indicators
        .as_array()
        .expect("an array of indicators")
        .iter()
        .map(|indicator| indicator["value"]["value"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lookup_network_text() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "198.51.100.0/24"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stdout(&output),
        "ip 198.51.100.0/24: 2 indicator(s) match every address\n\
         \x20 198.51.100.0/24 from mylist (id 198.51.100.0/24)\n\
         \x20 198.51.0.0/16 from mylist (id 198.51.0.0/16)\n\
         ip 198.51.100.0/24: 2 indicator(s) inside it match some of its addresses\n\
         \x20 198.51.100.7 from mylist (id 198.51.100.7)\n\
         \x20 198.51.100.130 from mylist (id 198.51.100.130)\n"
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn lookup_network_inside_capped() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "198.51.100.128/25"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stdout(&output),
        "ip 198.51.100.128/25: 2 indicator(s) match every address\n\
         \x20 198.51.100.0/24 from mylist (id 198.51.100.0/24)\n\
         \x20 198.51.0.0/16 from mylist (id 198.51.0.0/16)\n\
         ip 198.51.100.128/25: 1 indicator(s) inside it match some of its addresses\n\
         \x20 198.51.100.130 from mylist (id 198.51.100.130)\n"
    );

    let output = setup.run(&["lookup", "203.0.0.0/8"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.starts_with(
            "ip 203.0.0.0/8: 55 indicator(s) inside it match some of its addresses\n\
             \x20 203.0.113.1 from mylist (id 203.0.113.1)\n\
             \x20 203.0.113.2 from mylist (id 203.0.113.2)\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(
            "\x20 203.0.113.50 from mylist (id 203.0.113.50)\n\
             \x20 ... and 5 more (the first 50 by address are listed)\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 52, "{text}");
}

#[test]
fn lookup_network_json() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "--json", "203.0.113.0/24"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let found = json(&output);
    assert_eq!(found["value"], "203.0.113.0/24");
    assert_eq!(found["type"], "ip");
    // The same keys as a value lookup; a network has no port.
    assert_eq!(found.get("ignored_port"), Some(&serde_json::Value::Null));
    assert_eq!(values(&found["matches"]), Vec::<String>::new());
    // Single addresses are written as the text output writes them, without
    // /32 or /128.
    let inside = values(&found["inside"]);
    let expected: Vec<String> = (1..=50).map(|host| format!("203.0.113.{host}")).collect();
    assert_eq!(inside, expected);
    assert_eq!(found["inside_total"], 55);
    assert_eq!(found["inside"][0]["source"], "mylist");
    assert_eq!(found["inside"][0]["id"], "203.0.113.1");

    let output = setup.run(&["lookup", "--json", "2001:db8::/32"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let found = json(&output);
    assert_eq!(values(&found["matches"]), ["2001:db8::/32"]);
    assert_eq!(values(&found["inside"]), ["2001:db8:1::5"]);
    assert_eq!(found["inside_total"], 1);
}

#[test]
fn lookup_network_no_match() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "10.0.0.0/8"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(stdout(&output), "ip 10.0.0.0/8: no indicator matches\n");

    let output = setup.run(&["lookup", "--json", "2001:db9::/32"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let found = json(&output);
    assert_eq!(values(&found["matches"]), Vec::<String>::new());
    assert_eq!(values(&found["inside"]), Vec::<String>::new());
    assert_eq!(found["inside_total"], 0);
}

#[test]
fn lookup_network_invalid_prefix() {
    let setup = Setup::new();
    let cases = [
        (
            "198.51.100.0/33",
            "ioc-milter: error: invalid CIDR network \"198.51.100.0/33\": the prefix length 33 is longer than IPv4 allows (at most 32); write a prefix length from 0 to 32, or the address alone\n",
        ),
        (
            "2001:db8::/129",
            "ioc-milter: error: invalid CIDR network \"2001:db8::/129\": the prefix length 129 is longer than IPv6 allows (at most 128); write a prefix length from 0 to 128, or the address alone\n",
        ),
    ];
    for (value, expected) in cases {
        let output = setup.run(&["lookup", value]);
        assert_eq!(output.status.code(), Some(2), "{value}: {output:?}");
        assert_eq!(stdout(&output), "", "{value}");
        assert_eq!(stderr(&output), expected, "{value}");
    }
}

#[test]
fn lookup_json_names_ignored_port() {
    let setup = Setup::new();
    let cases = [
        (
            "198.51.100.7:25",
            serde_json::json!(25),
            "198.51.100.7",
            vec!["198.51.100.7", "198.51.100.0/24", "198.51.0.0/16"],
        ),
        (
            "[2001:db8:1::5]:443",
            serde_json::json!(443),
            "2001:db8:1::5",
            vec!["2001:db8:1::5", "2001:db8::/32"],
        ),
        (
            "198.51.100.7",
            serde_json::Value::Null,
            "198.51.100.7",
            vec!["198.51.100.7", "198.51.100.0/24", "198.51.0.0/16"],
        ),
    ];
    for (value, port, looked_up, matches) in cases {
        let output = setup.run(&["lookup", "--json", value]);
        assert_eq!(output.status.code(), Some(1), "{value}: {output:?}");
        let found = json(&output);
        assert_eq!(found["ignored_port"], port, "{value}");
        assert_eq!(found["value"], looked_up, "{value}");
        assert_eq!(values(&found["matches"]), matches, "{value}");
    }
}

#[test]
fn lookup_drops_port() {
    let setup = Setup::new();
    let cases = [
        (
            "198.51.100.7:25",
            "ip 198.51.100.7: 3 indicator(s) match\n",
            "note: port 25 ignored, looking up 198.51.100.7 (IP address and domain indicators match any port)\n",
        ),
        (
            "[2001:db8:1::5]:443",
            "ip 2001:db8:1::5: 2 indicator(s) match\n",
            "note: port 443 ignored, looking up 2001:db8:1::5 (IP address and domain indicators match any port)\n",
        ),
        (
            "www.Evil.Example.net:8080",
            "domain www.evil.example.net: 1 indicator(s) match\n",
            "note: port 8080 ignored, looking up www.evil.example.net (IP address and domain indicators match any port)\n",
        ),
    ];
    for (value, first_line, note) in cases {
        let output = setup.run(&["lookup", value]);
        assert_eq!(output.status.code(), Some(1), "{value}: {output:?}");
        let text = stdout(&output);
        assert!(text.starts_with(first_line), "{value}: {text}");
        assert_eq!(stderr(&output), note, "{value}");
    }
}

#[test]
fn lookup_port_out_of_range() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "evil.example.net:65536"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(
        stderr(&output),
        "ioc-milter: error: cannot read \"evil.example.net:65536\": port 65536 is out of range (0 to 65535). Look up the address or domain without the port\n"
    );
}

/// URLs keep their port, and a bare IPv6 address is an address, not a
/// host and port.
#[test]
fn lookup_url_and_ipv6_unchanged() {
    let setup = Setup::new();
    let output = setup.run(&["lookup", "http://evil.example.net:8080/x"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stdout(&output),
        "url http://evil.example.net:8080/x: no indicator matches\n\
         domain evil.example.net: 1 indicator(s) match\n\
         \x20 evil.example.net from mylist (id evil.example.net)\n"
    );
    assert_eq!(stderr(&output), "");

    let output = setup.run(&["lookup", "2001:db8:1::5"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        stdout(&output),
        "ip 2001:db8:1::5: 2 indicator(s) match\n\
         \x20 2001:db8:1::5 from mylist (id 2001:db8:1::5)\n\
         \x20 2001:db8::/32 from mylist (id 2001:db8::/32)\n"
    );
    assert_eq!(stderr(&output), "");
}

fn not_mail_warning(name: &str, reason: &str) -> String {
    if reason == "it is empty" {
        return format!("warning: {name}: {reason}, so it does not look like a mail message\n");
    }
    format!(
        "warning: {name}: {reason}, so it does not look like a mail message; it is judged as the attachment of a message, with its text as the body\n"
    )
}

const NO_FIELD: &str = "no header field (such as \"From: ...\") comes before the first blank line";

#[test]
fn check_warns_on_non_mail() {
    let setup = Setup::new();
    let pdf = setup.path("report.pdf");
    let mut bytes =
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(4096));
    std::fs::write(&pdf, bytes).unwrap();
    let empty = setup.path("empty.eml");
    std::fs::write(&empty, b"").unwrap();
    let body_only = setup.path("body.txt");
    std::fs::write(
        &body_only,
        "Dear team,\n\nplease see http://evil.example.net/x\n",
    )
    .unwrap();

    let linked_pdf = setup.path("invoice.pdf");
    std::fs::write(
        &linked_pdf,
        b"%PDF-1.4\n1 0 obj\n<< /S /URI /URI (https://evil.example.net/pay) >>\nendobj\n\xe2\xe3\xcf\xd3\n",
    )
    .unwrap();

    // The verdict is still given: the file is judged as an attachment, so
    // a link in a PDF matches, and its text as a body, so a URL matches.
    let cases = [
        (&pdf, NO_FIELD, 0, "accept (no match)"),
        (&linked_pdf, NO_FIELD, 1, "reject, 1 match(es)"),
        (&empty, "it is empty", 0, "accept (no match)"),
        (&body_only, NO_FIELD, 1, "reject, 1 match(es)"),
    ];
    for (file, reason, status, verdict) in cases {
        let name = file.to_str().unwrap();
        let output = setup.run(&["check", name]);
        assert_eq!(output.status.code(), Some(status), "{name}: {output:?}");
        let text = stdout(&output);
        assert_eq!(
            text.lines().next(),
            Some(format!("{name}: {verdict}").as_str())
        );
        assert_eq!(stderr(&output), not_mail_warning(name, reason), "{name}");
    }

    let name = pdf.to_str().unwrap();
    let output = setup.run(&["check", "--json", name]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let line = json(&output);
    assert_eq!(line["verdict"], "accept");
    assert_eq!(
        line["warning"],
        not_mail_warning(name, NO_FIELD)
            .trim_start_matches("warning: ")
            .trim_end()
    );
    assert_eq!(stderr(&output), not_mail_warning(name, NO_FIELD));
}

#[test]
fn check_mail_not_warned() {
    let setup = Setup::new();
    let message = setup.path("m.eml");
    std::fs::write(
        &message,
        "Received: from mx.example.com\r\nFrom: a@example.com\r\nSubject: s\r\n\r\nsee http://evil.example.net/x\r\n",
    )
    .unwrap();
    let mbox = setup.path("m.mbox");
    std::fs::write(
        &mbox,
        "From alice@example.com Thu Mar  8 17:40:00 2005\nFrom: a@example.com\n\nhello\n",
    )
    .unwrap();
    for file in [&message, &mbox] {
        let name = file.to_str().unwrap();
        let output = setup.run(&["check", "--json", name]);
        assert_eq!(stderr(&output), "", "{name}");
        assert_eq!(json(&output)["warning"], serde_json::Value::Null, "{name}");
    }
    let output = setup.run(&["check", message.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(stderr(&output), "");
}

/// Every file of the corpus's `mail` directory with a header field before
/// its first blank line passes without a warning. The ten that warn are
/// not messages: two empty files, one holding only a newline, a ZIP
/// archive, an Outlook .msg (OLE2) file, three license texts, a
/// .gitattributes file and a message body without its header.
#[test]
fn check_corpus_warnings() {
    let Some(corpus) = std::env::var_os("IOC_MILTER_CORPUS").map(PathBuf::from) else {
        println!("check_corpus_warnings: skipped, IOC_MILTER_CORPUS is not set");
        return;
    };
    let mail = corpus.join("mail");
    let mut files = Vec::new();
    collect_files(&mail, &mut files);
    files.sort();
    assert!(
        files.len() > 800,
        "{} files in {}",
        files.len(),
        mail.display()
    );

    let setup = Setup::new();
    let output = Command::new(BINARY)
        .arg("--config")
        .arg(&setup.config)
        .arg("check")
        .args(&files)
        .output()
        .expect("the ioc-milter binary runs");
    assert!(matches!(output.status.code(), Some(0 | 1)), "{output:?}");
    let verdicts = stdout(&output)
        .lines()
        .filter(|line| !line.starts_with("  "))
        .count();
    assert_eq!(verdicts, files.len());

    let prefix = format!("warning: {}/", mail.display());
    let mut warned: Vec<String> = stderr(&output)
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(|rest| {
            rest.split_once(": ")
                .map_or(rest, |(name, _)| name)
                .to_string()
        })
        .collect();
    warned.sort();
    assert_eq!(
        warned,
        [
            "mime/cpython-test_email/msg_19.txt",
            "mime/pymisp/mail_1.eml.zip",
            "mime/python-mail-parser/mail_outlook_1",
            "mime/ruby-mail/.gitattributes",
            "mime/ruby-mail/sample_output_multipart",
            "mime/spamassassin/spam/bsmtpnull",
            "mime/stalwart-mail-parser/legacy/COPYING",
            "mime/stalwart-mail-parser/malformed/COPYING",
            "mime/stalwart-mail-parser/thirdparty/COPYING",
            "phish/phishing_pot/sample-2227.eml",
        ]
    );
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

#[test]
fn check_names_limits_reached() {
    let setup = Setup::new();
    // 2,001 distinct links: one more than the default [limits] max_urls.
    let mut message = String::from("From: a@example.org\r\nSubject: many links\r\n\r\n");
    for link in 0..2_001 {
        writeln!(message, "https://site-{link}.example.org/").unwrap();
    }
    let path = setup.path("many-links.eml");
    std::fs::write(&path, message).unwrap();
    let name = path.display().to_string();

    let output = setup.run(&["check", &name]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        stdout(&output),
        format!("{name}: accept (no match)\n  limit reached: [limits] max_urls; part of the message was not scanned, so the verdict does not cover it\n")
    );

    let output = setup.run(&["check", "--json", &name]);
    assert_eq!(json(&output)["limits_hit"], serde_json::json!(["max_urls"]));
}

#[test]
fn check_saved_attachment_hash() {
    let setup = Setup::new();
    let path = setup.path("saved.bin");
    std::fs::write(&path, SAVED_ATTACHMENT).unwrap();
    let name = path.to_str().unwrap();
    let digest = hex::encode(Sha256::digest(SAVED_ATTACHMENT));

    let output = setup.run(&["check", name]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(stderr(&output), not_mail_warning(name, NO_FIELD));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&format!("{name}: reject, 1 match(es)").as_str())
    );
    let found = lines.get(1).unwrap_or(&"");
    assert!(
        found.starts_with(&format!(
            "  hash {digest} at attachment:1:saved.bin matches {digest} from mylist"
        )),
        "{text}"
    );
}

/// A message without a Received header or a listed address, so only the
/// assumed client IP or sender can match.
const CLEAN_MESSAGE: &str = "From: a@example.org\r\nSubject: s\r\n\r\nhello\r\n";

#[test]
fn check_client_ip_forms() {
    let setup = Setup::new();
    let path = setup.path("clean.eml");
    std::fs::write(&path, CLEAN_MESSAGE).unwrap();
    let name = path.to_str().unwrap();
    let v4 = format!(
        "{name}: reject, 3 match(es)\n\
         \x20 ip 198.51.100.7 at connect matches 198.51.100.7 from mylist (id 198.51.100.7) -> reject\n\
         \x20 ip 198.51.100.7 at connect matches 198.51.100.0/24 from mylist (id 198.51.100.0/24) -> reject\n\
         \x20 ip 198.51.100.7 at connect matches 198.51.0.0/16 from mylist (id 198.51.0.0/16) -> reject\n"
    );
    let v6 = format!(
        "{name}: reject, 2 match(es)\n\
         \x20 ip 2001:db8:1::5 at connect matches 2001:db8:1::5 from mylist (id 2001:db8:1::5) -> reject\n\
         \x20 ip 2001:db8:1::5 at connect matches 2001:db8::/32 from mylist (id 2001:db8::/32) -> reject\n"
    );
    let cases = [
        ("198.51.100.7", &v4),
        ("198.51.100.7:25", &v4),
        ("2001:db8:1::5", &v6),
        ("[2001:db8:1::5]", &v6),
        ("[2001:db8:1::5]:25", &v6),
    ];
    for (client_ip, expected) in cases {
        let output = setup.run(&["check", "--client-ip", client_ip, name]);
        assert_eq!(output.status.code(), Some(1), "{client_ip}: {output:?}");
        assert_eq!(&stdout(&output), expected, "{client_ip}");
        assert_eq!(stderr(&output), "", "{client_ip}");
    }
}

#[test]
fn check_option_values_invalid() {
    let setup = Setup::new();
    let path = setup.path("clean.eml");
    std::fs::write(&path, CLEAN_MESSAGE).unwrap();
    let name = path.to_str().unwrap();
    let cases = [
        (
            "--client-ip",
            "mail.example.net",
            "error: invalid value 'mail.example.net' for '--client-ip <IP>': not an IP address; write an IPv4 or IPv6 address such as 192.0.2.7 or 2001:db8::1 (a port, as in 192.0.2.7:25 or [2001:db8::1]:25, is ignored)\n\nFor more information, try '--help'.\n",
        ),
        (
            "--client-ip",
            "192.0.2.7:70000",
            "error: invalid value '192.0.2.7:70000' for '--client-ip <IP>': port 70000 is out of range (0 to 65535); write the address without the port, such as 192.0.2.7\n\nFor more information, try '--help'.\n",
        ),
        (
            "--sender",
            "bounce",
            "error: invalid value 'bounce' for '--sender <ADDRESS>': not an email address (missing '@'); write the envelope sender as LOCAL@DOMAIN, such as bounce@example.com, or \"<>\" for the null sender\n\nFor more information, try '--help'.\n",
        ),
        (
            "--sender",
            "bounce@bad host",
            "error: invalid value 'bounce@bad host' for '--sender <ADDRESS>': not an email address (labels may contain only letters, digits, '-' and '_'); write the envelope sender as LOCAL@DOMAIN, such as bounce@example.com, or \"<>\" for the null sender\n\nFor more information, try '--help'.\n",
        ),
    ];
    for (option, value, expected) in cases {
        let output = setup.run(&["check", option, value, name]);
        assert_eq!(output.status.code(), Some(2), "{value}: {output:?}");
        assert_eq!(stdout(&output), "", "{value}");
        assert_eq!(stderr(&output), expected, "{value}");
    }
}

#[test]
fn check_sender_forms() {
    let setup = Setup::new();
    let path = setup.path("bounce.eml");
    std::fs::write(
        &path,
        "From: a@example.org\r\nReturn-Path: <bounce@evil.example.net>\r\nSubject: s\r\n\r\nhello\r\n",
    )
    .unwrap();
    let name = path.to_str().unwrap();
    let header_match = "  domain evil.example.net at header:Return-Path matches evil.example.net from mylist (id evil.example.net) -> reject\n";
    let with_envelope = format!(
        "{name}: reject, 2 match(es)\n\
         \x20 domain evil.example.net at envelope-sender matches evil.example.net from mylist (id evil.example.net) -> reject\n\
         {header_match}"
    );
    // The null sender replaces the Return-Path default, so only the header
    // matches.
    let null_sender = format!("{name}: reject, 1 match(es)\n{header_match}");
    let cases = [
        ("<>", &null_sender),
        ("", &null_sender),
        ("<Bounce@Evil.Example.net>", &with_envelope),
        ("bounce@evil.example.net", &with_envelope),
    ];
    for (sender, expected) in cases {
        let output = setup.run(&["check", "--sender", sender, name]);
        assert_eq!(output.status.code(), Some(1), "{sender}: {output:?}");
        assert_eq!(&stdout(&output), expected, "{sender}");
        assert_eq!(stderr(&output), "", "{sender}");
    }
}

#[test]
fn matches_log_path_missing() {
    let setup = Setup::new();
    let missing = setup.path("no-such-log.jsonl");
    let name = missing.to_str().unwrap();
    let output = setup.run(&["matches", "--log", name]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(
        stderr(&output),
        format!("ioc-milter: error: match log {name} not found; check the path given with --log, or leave --log out to read [match_log] path\n")
    );
}
