//! Command-line definitions (clap).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::host_port;
use crate::index::normalize;

/// A milter for Postfix and Sendmail that checks mail against threat
/// intelligence feeds (TAXII 1.1 / STIX 1.x) and rejects, quarantines or tags
/// what matches.
#[derive(Debug, Parser)]
#[command(name = "ioc-milter", version, about)]
pub struct Cli {
    /// Configuration file [default: $IOC_MILTER_CONFIG, else
    /// /etc/ioc-milter/ioc-milter.toml].
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `ioc_milter=debug` [default: $RUST_LOG, else
    /// info for run, demo and poll, warn for the other commands].
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the milter and the feed pollers in the foreground.
    Run,
    /// Run the embedded demo: write demo indicators and messages, load them,
    /// judge the messages, then serve the milter until interrupted. The demo
    /// writes and runs its own configuration, DIR/demo.toml, so it rejects
    /// --config.
    Demo(DemoArgs),
    /// Validate the configuration file and print a summary.
    CheckConfig,
    /// Poll sources now and print the counts; the result is saved in the
    /// state directory, where a restarted daemon finds it.
    Poll(PollArgs),
    /// Show each source's state: from the running daemon when it responds
    /// on its control socket, else from the state directory.
    Sources(JsonArg),
    /// List a TAXII server's API roots and collections (TAXII 2.1) or
    /// services and collections (TAXII 1.1).
    Discover(DiscoverArgs),
    /// Poll a source without saving anything and print what would be
    /// added, invalid and unsupported.
    TestSource(SourceArg),
    /// Stop polling a source in the running daemon; its set stays in use.
    Suspend(SourceArg),
    /// Resume polling a suspended source in the running daemon.
    Resume(SourceArg),
    /// Show which indicators match a value (IP address or network, domain,
    /// URL, hash or email). Exit status: 0 no match, 1 a match, 2 error.
    Lookup(LookupArgs),
    /// Judge message files offline. Exit status: 0 no match, 1 a match, 2 error.
    Check(CheckArgs),
    /// Search and summarize the match log.
    Matches(MatchesArgs),
    /// Review, release or delete messages held in Postfix's hold queue.
    Quarantine(QuarantineArgs),
}

#[derive(Debug, Args)]
pub struct QuarantineArgs {
    /// Postfix configuration directory (passed to postqueue, postcat and
    /// postsuper as -c DIR) [default: Postfix's own].
    #[arg(long, value_name = "DIR", global = true)]
    pub postfix_config: Option<PathBuf>,
    /// Read this match log instead of the configured one.
    #[arg(long, value_name = "FILE", global = true)]
    pub log: Option<PathBuf>,
    #[command(subcommand)]
    pub command: QuarantineCommand,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// List held messages with the matches that caused the hold.
    List {
        /// Print one JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Show one held message: envelope, matches and headers.
    Show {
        /// Queue id, as `list` prints it.
        queue_id: String,
    },
    /// Release held messages for delivery (postsuper -H).
    Release {
        /// Queue ids to release.
        queue_ids: Vec<String>,
        /// Release every held message that this source matched, e.g. after
        /// the source published a false positive.
        #[arg(long, value_name = "SOURCE")]
        all_from_source: Option<String>,
    },
    /// Delete held messages (postsuper -d).
    Delete {
        /// Queue ids to delete.
        #[arg(required = true)]
        queue_ids: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's files, state and match log.
    #[arg(long, default_value = "ioc-milter-demo")]
    pub dir: PathBuf,
    /// Judge the demo messages and exit instead of serving the milter.
    #[arg(long)]
    pub no_serve: bool,
    /// The global `--config`, which the demo rejects. It is declared here
    /// and hidden so that clap does not list the global option in the
    /// demo's help. clap stores its value both here and in [`Cli::config`].
    #[arg(long, short = 'c', value_name = "FILE", hide = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SourceArg {
    /// Name of a configured source.
    pub source: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Discovery URL (TAXII 2.1: e.g. https://host/taxii2/; TAXII 1.1: the
    /// discovery service, e.g. https://host/taxii/discovery).
    pub url: String,
    /// User name for HTTP basic authentication.
    #[arg(long)]
    pub username: Option<String>,
    /// Environment variable holding the password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// File holding the password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Header for an API key, with --api-key-env.
    #[arg(long, value_name = "NAME", default_value = "Authorization")]
    pub api_key_header: String,
    /// Environment variable holding an API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Extra CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// HTTP or HTTPS proxy URL.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Poll only this source (default: every source that is not suspended).
    pub source: Option<String>,
    /// Full poll: reload the whole age window and replace the source's set.
    #[arg(long)]
    pub full: bool,
    /// Print one JSON object per source.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The value: an IP address, CIDR network, domain, URL,
    /// MD5/SHA-1/SHA-256 hash or email address. For a network, the
    /// indicators that contain it and the first 50 inside it are shown. A
    /// port after an address or domain (192.0.2.7:25, [2001:db8::1]:443,
    /// mail.example.net:587) is ignored, with a note on standard error
    /// (with --json, the port is in the ignored_port field too).
    pub value: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Message files (RFC 5322, .eml); `-` reads one message from standard
    /// input, for example from `postcat -bh -q QUEUE_ID`. A file without a
    /// header field before its first blank line, such as a saved
    /// attachment, is judged as an attachment, with a warning.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per message.
    #[arg(long)]
    pub json: bool,
    /// Client IP to assume, as if the message came from it over SMTP. A
    /// port, as in 192.0.2.7:25 or [2001:db8::1]:25, is ignored, as lookup
    /// ignores it.
    #[arg(long, value_name = "IP", value_parser = parse_client_ip)]
    pub client_ip: Option<IpAddr>,
    /// Envelope sender to assume, as LOCAL@DOMAIN with or without angle
    /// brackets. "<>" or "" is the null sender [default: the Return-Path
    /// header].
    #[arg(long, value_name = "ADDRESS", value_parser = parse_sender)]
    pub sender: Option<String>,
}

/// Reads `check --client-ip` as `lookup` reads an address: bare, in
/// brackets, or with a port, which is dropped.
fn parse_client_ip(text: &str) -> Result<IpAddr, String> {
    match host_port::ip_with_port(text.trim()) {
        Ok(Some((ip, _port))) => Ok(ip),
        Ok(None) => Err(
            "not an IP address; write an IPv4 or IPv6 address such as 192.0.2.7 or 2001:db8::1 (a port, as in 192.0.2.7:25 or [2001:db8::1]:25, is ignored)".into(),
        ),
        Err(error) => {
            let example = if text.contains('[') {
                "2001:db8::1"
            } else {
                "192.0.2.7"
            };
            Err(format!(
                "{error}; write the address without the port, such as {example}"
            ))
        }
    }
}

/// Reads `check --sender`: an address with or without angle brackets, or
/// `<>` or an empty value for the null sender, which is returned as the
/// empty text, as the milter stores the null sender of `MAIL FROM:<>`.
fn parse_sender(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let address = trimmed
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or(trimmed);
    let advice = "write the envelope sender as LOCAL@DOMAIN, such as bounce@example.com, or \"<>\" for the null sender";
    if address.starts_with('<') || address.ends_with('>') {
        return Err(format!(
            "not an email address (an angle bracket without its partner); {advice}"
        ));
    }
    if address.is_empty() || is_address_literal_sender(address) {
        return Ok(address.to_string());
    }
    if let Some((local, domain)) = address.rsplit_once('@') {
        // RFC 5321 allows "@" and white space only inside a quoted local part.
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if quoted {
            return match normalize::domain(domain) {
                Ok(_) => Ok(address.to_string()),
                Err(error) => Err(format!("not an email address ({}); {advice}", error.reason)),
            };
        }
        if local.contains('@') {
            return Err(format!(
                "not an email address (more than one '@'); {advice}"
            ));
        }
    }
    match normalize::email(address) {
        Ok(_) => Ok(address.to_string()),
        Err(error) => Err(format!("not an email address ({}); {advice}", error.reason)),
    }
}

/// Checks for `LOCAL@[IP]` or `LOCAL@[IPv6:IP]`, a sender whose domain is
/// an address literal as RFC 5321 allows.
fn is_address_literal_sender(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let Some(literal) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return false;
    };
    let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
    !local.is_empty() && !local.contains(char::is_whitespace) && literal.parse::<IpAddr>().is_ok()
}

#[derive(Debug, Args)]
pub struct MatchesArgs {
    /// Only entries at or after this time (RFC 3339, a UTC date such as
    /// `2026-12-01` or date and time as the match lines print it, or a
    /// duration such as `24h` meaning that long ago).
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before this time (as for `--since`).
    #[arg(long)]
    pub until: Option<String>,
    /// Only entries with a match from this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only entries with this verdict (accept, tag, quarantine, tempfail,
    /// reject, discard).
    #[arg(long)]
    pub verdict: Option<String>,
    /// Only entries with a match whose indicator or observable contains this
    /// text.
    #[arg(long)]
    pub indicator: Option<String>,
    /// Only entries whose envelope sender contains this text.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only entries whose recipients include one containing this text.
    #[arg(long)]
    pub recipient: Option<String>,
    /// Only entries with a match of this observable type (ip, domain, url,
    /// hash, email).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Keep reading: print new entries as they are appended, like tail -f,
    /// until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Print a summary (counts by verdict, source, indicator, sender), as one
    /// JSON object with --json.
    #[arg(long)]
    pub summary: bool,
    /// Print the matching entries as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Read this match log instead of the configured one.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_forms() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let cases = [
            ("192.0.2.7", v4),
            ("192.0.2.7:25", v4),
            (" 192.0.2.7 ", v4),
            ("2001:db8::1", v6),
            ("[2001:db8::1]", v6),
            ("[2001:db8::1]:25", v6),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_client_ip(text), Ok(expected), "input {text:?}");
        }
    }

    #[test]
    fn client_ip_invalid() {
        assert_eq!(
            parse_client_ip("mail.example.net"),
            Err("not an IP address; write an IPv4 or IPv6 address such as 192.0.2.7 or 2001:db8::1 (a port, as in 192.0.2.7:25 or [2001:db8::1]:25, is ignored)".to_string())
        );
        assert_eq!(
            parse_client_ip("[2001:db8::1]:65536"),
            Err("port 65536 is out of range (0 to 65535); write the address without the port, such as 2001:db8::1".to_string())
        );
        assert_eq!(
            parse_client_ip("192.0.2.7:70000"),
            Err("port 70000 is out of range (0 to 65535); write the address without the port, such as 192.0.2.7".to_string())
        );
        assert_eq!(
            parse_client_ip("[2001:db8::1"),
            Err("not an IP address; write an IPv4 or IPv6 address such as 192.0.2.7 or 2001:db8::1 (a port, as in 192.0.2.7:25 or [2001:db8::1]:25, is ignored)".to_string())
        );
    }

    #[test]
    fn sender_forms() {
        let cases = [
            ("bounce@example.com", "bounce@example.com"),
            ("<Bounce@Example.com>", "Bounce@Example.com"),
            (" <bounce@example.com> ", "bounce@example.com"),
            ("<>", ""),
            ("", ""),
            ("postmaster@[192.0.2.1]", "postmaster@[192.0.2.1]"),
            (
                "postmaster@[IPv6:2001:db8::1]",
                "postmaster@[IPv6:2001:db8::1]",
            ),
            (
                "\"quoted local\"@example.org",
                "\"quoted local\"@example.org",
            ),
            ("\"a@b\"@example.org", "\"a@b\"@example.org"),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_sender(text),
                Ok(expected.to_string()),
                "input {text:?}"
            );
        }
    }

    #[test]
    fn sender_invalid() {
        let advice = "write the envelope sender as LOCAL@DOMAIN, such as bounce@example.com, or \"<>\" for the null sender";
        let cases = [
            ("bounce", "missing '@'"),
            ("<bounce>", "missing '@'"),
            (
                "@example.com",
                "the local part must have 1 to 64 characters and no white space",
            ),
            (
                "bounce@exa mple.com",
                "labels may contain only letters, digits, '-' and '_'",
            ),
            (
                "bounce@[not-an-ip]",
                "labels may contain only letters, digits, '-' and '_'",
            ),
            ("a@b@example.org", "more than one '@'"),
            (
                "<bounce@example.org",
                "an angle bracket without its partner",
            ),
            (
                "bounce@example.org>",
                "an angle bracket without its partner",
            ),
            (
                "\"quoted\"@exa mple.org",
                "labels may contain only letters, digits, '-' and '_'",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(
                parse_sender(text),
                Err(format!("not an email address ({reason}); {advice}")),
                "input {text:?}"
            );
        }
    }
}
