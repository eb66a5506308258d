//! Helpers shared by the benchmark examples and benches: deterministic
//! generators of mixed indicators and of synthetic messages, a reader of
//! .eml files, and the resident memory of this process.
//!
//! Included with `#[path = "..."] mod common;`, so every user compiles its
//! own copy and some items stay unused in some of them.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use base64::Engine as _;

use ioc_milter::extract::ObservableValue;
use ioc_milter::index::{HashValue, Indicator, IndicatorType, IndicatorValue};

/// SplitMix64: small, fast and deterministic; no cryptographic use.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn hex(&mut self, bytes: usize) -> String {
        let mut out = String::with_capacity(bytes * 2);
        while out.len() < bytes * 2 {
            out.push_str(&format!("{:016x}", self.next()));
        }
        out.truncate(bytes * 2);
        out
    }
}

const WORDS: [&str; 12] = [
    "secure", "login", "update", "account", "verify", "mail", "cdn", "bank", "pay", "drive",
    "cloud", "office",
];
const SUFFIXES: [&str; 8] = ["com", "net", "org", "info", "xyz", "ru", "top", "biz"];

fn domain_text(rng: &mut Rng, n: u64) -> String {
    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
    let suffix = SUFFIXES[rng.below(SUFFIXES.len() as u64) as usize];
    format!("{word}-{n:x}.{suffix}")
}

/// One generated value as (type, text); `n` keeps texts unique per seed.
pub fn value_text(rng: &mut Rng, n: u64) -> (IndicatorType, String) {
    match rng.below(100) {
        0..=24 => {
            let ip = Ipv4Addr::from((rng.next() as u32) | 0x0100_0000);
            (IndicatorType::Ip, ip.to_string())
        }
        25..=27 => {
            let prefix = 16 + rng.below(13) as u8;
            let raw = (rng.next() as u32) | 0x0100_0000;
            let masked = raw & (u32::MAX << (32 - u32::from(prefix)));
            (
                IndicatorType::Ip,
                format!("{}/{prefix}", Ipv4Addr::from(masked)),
            )
        }
        28..=29 => {
            let ip = Ipv6Addr::from((u128::from(rng.next()) << 64) | u128::from(rng.next()));
            let ip = Ipv6Addr::from(u128::from(ip) | (0x2a00u128 << 112));
            (IndicatorType::Ip, ip.to_string())
        }
        30..=59 => (IndicatorType::Domain, domain_text(rng, n)),
        60..=84 => {
            let host = domain_text(rng, n);
            let word = WORDS[rng.below(WORDS.len() as u64) as usize];
            (
                IndicatorType::Url,
                format!("http://{host}/{word}/{n}.php?id={}", rng.below(100_000)),
            )
        }
        85..=91 => (IndicatorType::Hash, rng.hex(32)),
        92..=94 => (IndicatorType::Hash, rng.hex(16)),
        95..=96 => (IndicatorType::Hash, rng.hex(20)),
        _ => (
            IndicatorType::Email,
            format!("user{n:x}@{}", domain_text(rng, n)),
        ),
    }
}

/// Generates `count` mixed indicators (IPs, CIDRs, domains, URLs, hashes,
/// email addresses) from `seed`; the same seed gives the same list.
pub fn indicators(count: usize, seed: u64) -> Vec<Indicator> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    let mut n = 0u64;
    while out.len() < count {
        n += 1;
        let (kind, text) = value_text(&mut rng, n ^ seed);
        if let Ok(value) = IndicatorValue::parse(kind, &text) {
            out.push(Indicator::new(value, "bench", &format!("i{n}")));
        }
    }
    out
}

/// The indicator values of the shared test peers (Postfix, rspamd, TAXII),
/// so one message can match in ioc-milter and rspamd alike.
pub fn peer_indicators() -> Vec<Indicator> {
    let list = [
        (IndicatorType::Ip, "203.0.113.7"),
        (IndicatorType::Ip, "198.51.100.0/24"),
        (IndicatorType::Ip, "192.0.2.99"),
        (IndicatorType::Domain, "evil-domain.example.net"),
        (IndicatorType::Domain, "phish-login.example.org"),
        (IndicatorType::Domain, "c2-one.example.net"),
        (
            IndicatorType::Url,
            "http://malware.example.com/payload/dropper.exe",
        ),
        (
            IndicatorType::Url,
            "https://phish-login.example.org/account/verify?id=42",
        ),
        (
            IndicatorType::Hash,
            "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c",
        ),
    ];
    list.iter()
        .filter_map(|(kind, text)| IndicatorValue::parse(*kind, text).ok())
        .enumerate()
        .map(|(n, value)| Indicator::new(value, "peer", &format!("p{n}")))
        .collect()
}

/// The observable that an indicator value would match exactly.
pub fn observable_for(value: &IndicatorValue) -> ObservableValue {
    match value {
        IndicatorValue::Ip(net) => ObservableValue::Ip(net.addr()),
        IndicatorValue::Domain(d) => ObservableValue::Domain(d.clone()),
        IndicatorValue::Url(u) => ObservableValue::Url(u.clone()),
        IndicatorValue::Hash(h) => ObservableValue::Hash(*h),
        IndicatorValue::Email(e) => ObservableValue::Email(e.clone()),
    }
}

/// Observables of every type that match nothing in a generated index.
pub fn miss_observables(count: usize) -> Vec<ObservableValue> {
    let mut rng = Rng::new(0x5eed_0bad);
    let mut out = Vec::with_capacity(count * 5);
    for n in 0..count as u64 {
        out.push(ObservableValue::Ip(IpAddr::V4(Ipv4Addr::new(
            10,
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
        ))));
        out.push(ObservableValue::Domain(format!("miss-{n}.sub.example.com")));
        out.push(ObservableValue::Url(format!(
            "http://miss-{n}.example.com/index.html"
        )));
        let mut digest = [0u8; 32];
        for chunk in digest.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        out.push(ObservableValue::Hash(HashValue::Sha256(digest)));
        out.push(ObservableValue::Email(format!(
            "nobody{n}@miss.example.com"
        )));
    }
    out
}

/// Resident set size of this process in bytes (Linux `/proc/self/status`).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Every regular file under `dir`, sorted, up to `limit` files.
pub fn files_under(dir: &Path, limit: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out.truncate(limit);
    out
}

/// A STIX 1.2 package with `count` indicators of the generated kinds, one
/// CybOX object each, in the shape OTX exports (address, domain, URI and
/// file hash objects with `condition="Equals"`).
pub fn stix1_package(count: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(count * 700 + 2048);
    out.push_str(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        "\n",
        r#"<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" "#,
        r#"xmlns:indicator="http://stix.mitre.org/Indicator-2" "#,
        r#"xmlns:cybox="http://cybox.mitre.org/cybox-2" "#,
        r#"xmlns:cyboxCommon="http://cybox.mitre.org/common-2" "#,
        r#"xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2" "#,
        r#"xmlns:DomainNameObj="http://cybox.mitre.org/objects#DomainNameObject-1" "#,
        r#"xmlns:URIObj="http://cybox.mitre.org/objects#URIObject-2" "#,
        r#"xmlns:FileObj="http://cybox.mitre.org/objects#FileObject-2" "#,
        r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
        r#"xmlns:bench="http://example.com/bench" id="bench:Package-1" version="1.2" "#,
        r#"timestamp="2026-12-01T00:00:00Z">"#,
        "\n<stix:STIX_Header><stix:Title>Generated benchmark package</stix:Title></stix:STIX_Header>\n<stix:Indicators>\n"
    ));
    for n in 1..=count as u64 {
        let (kind, text) = value_text(&mut rng, n);
        let properties = match kind {
            IndicatorType::Ip => {
                let category = if text.contains(':') {
                    "ipv6-addr"
                } else if text.contains('/') {
                    "cidr"
                } else {
                    "ipv4-addr"
                };
                format!(
                    r#"<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="{category}"><AddressObj:Address_Value condition="Equals">{text}</AddressObj:Address_Value></cybox:Properties>"#
                )
            }
            IndicatorType::Domain => format!(
                r#"<cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" type="FQDN"><DomainNameObj:Value condition="Equals">{text}</DomainNameObj:Value></cybox:Properties>"#
            ),
            IndicatorType::Url => format!(
                r#"<cybox:Properties xsi:type="URIObj:URIObjectType" type="URL"><URIObj:Value condition="Equals">{}</URIObj:Value></cybox:Properties>"#,
                text.replace('&', "&amp;")
            ),
            IndicatorType::Hash => {
                let name = match text.len() {
                    32 => "MD5",
                    40 => "SHA1",
                    _ => "SHA256",
                };
                format!(
                    r#"<cybox:Properties xsi:type="FileObj:FileObjectType"><FileObj:Hashes><cyboxCommon:Hash><cyboxCommon:Type condition="Equals">{name}</cyboxCommon:Type><cyboxCommon:Simple_Hash_Value condition="Equals">{text}</cyboxCommon:Simple_Hash_Value></cyboxCommon:Hash></FileObj:Hashes></cybox:Properties>"#
                )
            }
            IndicatorType::Email => format!(
                r#"<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="e-mail"><AddressObj:Address_Value condition="Equals">{text}</AddressObj:Address_Value></cybox:Properties>"#
            ),
        };
        out.push_str(&format!(
            "<stix:Indicator id=\"bench:Indicator-{n}\" timestamp=\"2026-12-01T00:00:00Z\" xsi:type=\"indicator:IndicatorType\"><indicator:Title>{kind} - generated {n}</indicator:Title><indicator:Observable id=\"bench:Observable-{n}\"><cybox:Object id=\"bench:Object-{n}\">{properties}</cybox:Object></indicator:Observable></stix:Indicator>\n"
        ));
    }
    out.push_str("</stix:Indicators>\n</stix:STIX_Package>\n");
    out
}

/// `count` synthetic messages (RFC 5322, CRLF line ends) for runs without
/// the corpus: a text part and an HTML part with links to generated hosts,
/// and on every third message a small base64 attachment. The host names
/// start with `news-` or `cdn-`, so no generated indicator names them.
pub fn generated_messages(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    for n in 0..count as u64 {
        let host = format!("news-{}", domain_text(&mut rng, n));
        let other = format!("cdn-{}", domain_text(&mut rng, n + 1));
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        let boundary = format!("gen-{n:08x}");
        let mut message = format!(
            "From: \"Notice {n}\" <notice{n}@{host}>\r\n\
             To: alice@test.example\r\n\
             Subject: Please {word} your account ({n})\r\n\
             Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
             Message-ID: <gen-{n}@{host}>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             Dear customer,\r\n\
             your {word} session expires today. Sign in at\r\n\
             https://{host}/{word}/index.php?u={n} or at http://{other}/start\r\n\
             to keep your mailbox.\r\n\
             \r\n\
             --{boundary}\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <html><body><p>Your {word} session expires today.</p>\r\n\
             <a href=\"https://{host}/{word}/index.php?u={n}\">Sign in</a></body></html>\r\n"
        );
        if n % 3 == 0 {
            let payload: String = (0..6).map(|_| format!("{:016x}", rng.next())).collect();
            message.push_str(&format!(
                "\r\n--{boundary}\r\n\
                 Content-Type: application/octet-stream; name=\"invoice-{n}.bin\"\r\n\
                 Content-Disposition: attachment; filename=\"invoice-{n}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\
                 \r\n\
                 {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(payload.as_bytes())
            ));
        }
        message.push_str(&format!("--{boundary}--\r\n"));
        out.push(message.into_bytes());
    }
    out
}

/// Generates a STIX 2.1 bundle with `count` indicator objects of the generated kinds,
/// one comparison each (`[ipv4-addr:value = '...']` and so on), with the
/// properties that feeds usually set (name, created, modified, valid_from,
/// pattern_type, labels).
pub fn stix2_bundle(count: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(count * 520 + 256);
    out.push_str("{\"type\":\"bundle\",\"id\":\"bundle--00000000-0000-4000-8000-000000000000\",\"objects\":[\n");
    for n in 1..=count as u64 {
        let (kind, text) = value_text(&mut rng, n);
        let pattern = match kind {
            IndicatorType::Ip if text.contains(':') => format!("[ipv6-addr:value = '{text}']"),
            IndicatorType::Ip => format!("[ipv4-addr:value = '{text}']"),
            IndicatorType::Domain => format!("[domain-name:value = '{text}']"),
            IndicatorType::Url => format!("[url:value = '{text}']"),
            IndicatorType::Hash => {
                let name = match text.len() {
                    32 => "MD5",
                    40 => "'SHA-1'",
                    _ => "'SHA-256'",
                };
                format!("[file:hashes.{name} = '{text}']")
            }
            IndicatorType::Email => format!("[email-addr:value = '{text}']"),
        };
        if n > 1 {
            out.push_str(",\n");
        }
        out.push_str(&format!(
            concat!(
                "{{\"type\":\"indicator\",\"spec_version\":\"2.1\",",
                "\"id\":\"indicator--{:08x}-0000-4000-8000-{:012x}\",",
                "\"created\":\"2026-12-01T00:00:00.000Z\",\"modified\":\"2026-12-01T00:00:00.000Z\",",
                "\"name\":\"{} - generated {}\",\"indicator_types\":[\"malicious-activity\"],",
                "\"pattern\":\"{}\",\"pattern_type\":\"stix\",",
                "\"valid_from\":\"2026-12-01T00:00:00Z\",\"labels\":[\"generated\"]}}"
            ),
            n >> 48,
            n,
            kind,
            n,
            pattern
        ));
    }
    out.push_str("\n]}\n");
    out
}
