//! Validation of the `[[source]]` keys of the taxii21, otx, text, csv and
//! misp kinds.

use std::path::Path;

use ioc_milter::config::{self, Column, Location, Secret, SourceKind};
use ioc_milter::index::IndicatorType;

fn parse(source: &str) -> Result<SourceKind, String> {
    let text = format!("[[source]]\nname = \"s\"\n{source}");
    config::parse(&text, Path::new("test.toml"), Path::new("/etc/ioc-milter"))
        .map(|c| c.sources.into_iter().next().map(|s| s.kind).unwrap())
        .map_err(|e| e.to_string())
}

fn error(source: &str) -> String {
    parse(source).unwrap_err()
}

#[test]
fn taxii21_fields() {
    let kind = parse(
        "kind = \"taxii21\"\nurl = \"https://taxii.example.net/api1\"\ncollection = \"c\"\nusername = \"u\"\npassword_env = \"P\"\npage_size = 10\n",
    )
    .unwrap();
    let SourceKind::Taxii21(taxii) = kind else {
        panic!("not taxii21: {kind:?}");
    };
    assert_eq!(taxii.api_root, "https://taxii.example.net/api1/");
    assert_eq!(taxii.collection, "c");
    assert_eq!(taxii.page_size, 10);
    assert_eq!(taxii.http.password, Some(Secret::Env("P".into())));
}

#[test]
fn taxii21_needs_url() {
    assert!(error("kind = \"taxii21\"\ncollection = \"c\"\n").contains("source[s].url: missing"));
}

#[test]
fn otx_default_url_and_header() {
    let kind = parse("kind = \"otx\"\napi_key_env = \"OTX_KEY\"\n").unwrap();
    let SourceKind::Otx(otx) = kind else {
        panic!("not otx: {kind:?}");
    };
    assert_eq!(
        otx.location,
        Location::Url("https://otx.alienvault.com".into())
    );
    let key = otx.http.api_key.unwrap();
    assert_eq!(key.header, "X-OTX-API-KEY");
    assert_eq!(key.secret, Secret::Env("OTX_KEY".into()));
}

#[test]
fn otx_needs_api_key() {
    assert!(error("kind = \"otx\"\n").contains("source[s].api_key: missing"));
}

#[test]
fn text_relative_path() {
    let kind =
        parse("kind = \"text\"\npath = \"lists/drop.txt\"\nindicator_type = \"ip\"\n").unwrap();
    let SourceKind::Text(list) = kind else {
        panic!("not text: {kind:?}");
    };
    assert_eq!(
        list.location,
        Location::Path("/etc/ioc-milter/lists/drop.txt".into())
    );
    assert_eq!(list.indicator_type, Some(IndicatorType::Ip));
}

#[test]
fn url_and_path_conflict() {
    let text = error("kind = \"text\"\nurl = \"https://a.example/x\"\npath = \"/x\"\n");
    assert!(text.contains("set either url or path"), "{text}");
}

#[test]
fn url_scheme_checked() {
    let text = error("kind = \"text\"\nurl = \"ftp://a.example/x\"\n");
    assert!(text.contains("invalid URL \"ftp://a.example/x\""), "{text}");
}

#[test]
fn unknown_indicator_type() {
    let text = error("kind = \"text\"\npath = \"/x\"\nindicator_type = \"asn\"\n");
    assert!(text.contains("unknown type \"asn\""), "{text}");
}

#[test]
fn csv_preset_threatfox() {
    let kind = parse("kind = \"csv\"\npreset = \"threatfox\"\npath = \"/x.csv\"\n").unwrap();
    let SourceKind::Csv(csv) = kind else {
        panic!("not csv: {kind:?}");
    };
    assert_eq!(csv.column, Column::Number(3));
    assert_eq!(csv.type_column, Some(Column::Number(4)));
    assert_eq!(csv.id_column, Some(Column::Number(2)));
    assert_eq!(csv.list.indicator_type, None);
}

#[test]
fn csv_named_column_tab() {
    let kind =
        parse("kind = \"csv\"\ncolumn = \"ioc\"\ndelimiter = \"\\\\t\"\npath = \"/x.tsv\"\n")
            .unwrap();
    let SourceKind::Csv(csv) = kind else {
        panic!("not csv: {kind:?}");
    };
    assert_eq!(csv.column, Column::Name("ioc".into()));
    assert_eq!(csv.delimiter, b'\t');
}

#[test]
fn csv_needs_column() {
    let text = error("kind = \"csv\"\npath = \"/x.csv\"\n");
    assert!(text.contains("source[s].column: missing"), "{text}");
}

#[test]
fn csv_unknown_preset() {
    let text = error("kind = \"csv\"\npreset = \"openphish\"\npath = \"/x.csv\"\n");
    assert!(text.contains("unknown preset \"openphish\""), "{text}");
}

#[test]
fn csv_column_zero() {
    let text = error("kind = \"csv\"\ncolumn = \"0\"\npath = \"/x.csv\"\n");
    assert!(text.contains("invalid column 0"), "{text}");
}

#[test]
fn client_cert_needs_key() {
    let text =
        error("kind = \"misp\"\nurl = \"https://misp.example/feed/\"\nclient_cert = \"/c.pem\"\n");
    assert!(text.contains("source[s].client_key: missing"), "{text}");
}

#[test]
fn two_api_keys_conflict() {
    let text = error(
        "kind = \"misp\"\nurl = \"https://misp.example/feed/\"\napi_key = \"a\"\napi_key_env = \"B\"\n",
    );
    assert!(
        text.contains("set only one of api_key, api_key_file, api_key_env"),
        "{text}"
    );
}

#[test]
fn bad_key_header() {
    let text = error(
        "kind = \"misp\"\nurl = \"https://misp.example/feed/\"\napi_key = \"a\"\napi_key_header = \"X Key\"\n",
    );
    assert!(text.contains("invalid header name \"X Key\""), "{text}");
}

#[test]
fn retries_range() {
    let text = error("kind = \"text\"\npath = \"/x\"\nretries = 11\n");
    assert!(
        text.contains("source[s].retries: invalid value 11; allowed: 0 to 10"),
        "{text}"
    );
}

#[test]
fn unknown_kind_lists_all() {
    let text = error("kind = \"stix2\"\n");
    assert!(
        text.contains("allowed kinds: taxii11, taxii21, otx, text, csv, misp, file"),
        "{text}"
    );
}

#[test]
fn misp_rejects_indicator_type() {
    let text = error("kind = \"misp\"\npath = \"/feed\"\nindicator_type = \"ip\"\n");
    assert!(
        text.contains("source[s].indicator_type: not used by a misp source"),
        "{text}"
    );
}

#[test]
fn taxii11_rejects_url() {
    let text = error(
        "kind = \"taxii11\"\nhostname = \"otx.alienvault.com\"\ncollection = \"c\"\nurl = \"https://a.example/\"\n",
    );
    assert!(
        text.contains("source[s].url: not used by a taxii11 source"),
        "{text}"
    );
}

#[test]
fn text_rejects_preset() {
    let text = error("kind = \"text\"\npath = \"/x\"\npreset = \"urlhaus\"\n");
    assert!(
        text.contains("source[s].preset: not used by a text source"),
        "{text}"
    );
}
