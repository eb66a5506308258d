//! Milter load generator. It plays the MTA side of milter protocol 6
//! (through `MtaClient`) against a milter on loopback and replays a
//! directory of .eml files over N concurrent connections. It reports
//! messages per second and the latency of each message, from MAIL FROM to
//! the end-of-message reply, at p50, p99 and p99.9.
//!
//! ```text
//! cargo run --release --example loadgen -- --target inet:127.0.0.1:8994 \
//!     --dir "$IOC_MILTER_CORPUS/mail/phish" [--connections 16] \
//!     [--count 20000] [--seconds 20] [--rate MSGS_PER_S] [--threads 1] \
//!     [--label NAME]
//! ```
//! The run stops at `--count` messages or after `--seconds`, whichever
//! comes first (both are capped: 1,000,000 messages, 600 s). `--rate` paces
//! the messages (open loop, spread over the connections) instead of sending
//! as fast as the milter answers. Each connection sends CONNECT and HELO
//! once, then one message after another, with the macros `MtaClient` sends
//! (Postfix's `j`, `{daemon_name}`, `{client_addr}`, `i`, `{mail_addr}`,
//! `{rcpt_addr}`). The last line is JSON for scripts.

#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_milter::config::ListenAddr;
use ioc_milter::milter::{MtaClient, MtaMessage, Reply};

const MAX_COUNT: u64 = 1_000_000;
const MAX_SECONDS: u64 = 600;

struct Options {
    target: ListenAddr,
    dir: PathBuf,
    connections: usize,
    count: u64,
    seconds: u64,
    rate: f64,
    threads: usize,
    label: String,
}

fn value<T: std::str::FromStr>(flag: &str, text: Option<String>) -> Result<T, String> {
    let text = text.ok_or_else(|| format!("{flag} needs a value"))?;
    text.parse()
        .map_err(|_| format!("{flag} value {text:?} is not valid; see the file header"))
}

fn parse_target(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(ListenAddr::Unix(path.into()));
    }
    let rest = text.strip_prefix("inet:").unwrap_or(text);
    let addr: SocketAddr = rest
        .parse()
        .map_err(|_| format!("target {text:?} is not inet:IP:PORT or unix:PATH"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "target {text:?} is not on loopback; this tool only talks to 127.0.0.1 or ::1"
        ));
    }
    Ok(ListenAddr::Inet(addr))
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        target: parse_target("inet:127.0.0.1:8994")?,
        dir: std::env::var_os("IOC_MILTER_CORPUS")
            .map(|c| PathBuf::from(c).join("mail/phish"))
            .unwrap_or_default(),
        connections: 4,
        count: 10_000,
        seconds: 20,
        rate: 0.0,
        threads: 1,
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--target" => options.target = parse_target(&value::<String>(&flag, args.next())?)?,
            "--dir" => options.dir = value(&flag, args.next())?,
            "--connections" => options.connections = value(&flag, args.next())?,
            "--count" => options.count = value(&flag, args.next())?,
            "--seconds" => options.seconds = value(&flag, args.next())?,
            "--rate" => options.rate = value(&flag, args.next())?,
            "--threads" => options.threads = value(&flag, args.next())?,
            "--label" => options.label = value(&flag, args.next())?,
            other => return Err(format!("unknown argument {other:?}; see the file header")),
        }
    }
    options.connections = options.connections.clamp(1, 1024);
    options.count = options.count.clamp(1, MAX_COUNT);
    options.seconds = options.seconds.clamp(1, MAX_SECONDS);
    options.threads = options.threads.clamp(1, 8);
    Ok(options)
}

/// Splits a raw message into headers (unfolded continuation lines kept with
/// CRLF, value without the leading space, as Postfix sends them) and a CRLF
/// body.
fn to_mta_message(raw: &[u8], n: usize) -> MtaMessage {
    let text = String::from_utf8_lossy(raw);
    let text = text.replace("\r\n", "\n");
    let (head, body) = match text.find("\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text.as_str(), ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push_str("\r\n");
                last.1.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            headers.push((name.to_string(), value.to_string()));
        }
    }
    MtaMessage {
        sender: "sender@src.example".to_string(),
        recipients: vec!["alice@test.example".to_string()],
        headers,
        body: body.replace('\n', "\r\n").into_bytes(),
        queue_id: Some(format!("{:X}", 0xB000_0000u64 + n as u64)),
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failed: u64,
    accept: u64,
    reject: u64,
    other: u64,
}

async fn run_connection(
    id: usize,
    options: Arc<Options>,
    messages: Arc<Vec<MtaMessage>>,
    issued: Arc<AtomicU64>,
    deadline: Instant,
    start: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut client = match MtaClient::connect(&options.target).await {
        Ok(client) => client,
        Err(error) => {
            eprintln!(
                "connection {id}: cannot connect to {}: {error}",
                options.target
            );
            tally.failed += 1;
            return tally;
        }
    };
    client.set_timeout(Duration::from_secs(30));
    let client_ip = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000 + id as u16);
    let setup = async {
        client.negotiate().await?;
        client.connect_event("unknown", client_ip).await?;
        client.helo("loadgen.example").await
    };
    if let Err(error) = setup.await {
        eprintln!("connection {id}: setup failed: {error}");
        tally.failed += 1;
        return tally;
    }
    loop {
        let n = issued.fetch_add(1, Ordering::Relaxed);
        if n >= options.count || Instant::now() >= deadline {
            break;
        }
        if options.rate > 0.0 {
            let due = start + Duration::from_secs_f64(n as f64 / options.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let Some(message) = messages.get(n as usize % messages.len()) else {
            break;
        };
        let began = Instant::now();
        match client.send_message(message).await {
            Ok(replies) => {
                let micros = began.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                match replies.verdict() {
                    Some(Reply::Accept | Reply::Continue) => tally.accept += 1,
                    Some(Reply::Reject | Reply::ReplyCode { .. }) => tally.reject += 1,
                    _ => tally.other += 1,
                }
            }
            Err(error) => {
                eprintln!("connection {id}: message {n} failed: {error}");
                tally.failed += 1;
                return tally;
            }
        }
    }
    let _ = client.quit().await;
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().map(f64::from).unwrap_or(0.0) / 1000.0
}

fn main() -> Result<(), String> {
    let options = Arc::new(options()?);
    let files = common::files_under(&options.dir, 100_000);
    let messages: Vec<MtaMessage> = files
        .iter()
        .enumerate()
        .filter_map(|(n, path)| std::fs::read(path).ok().map(|raw| to_mta_message(&raw, n)))
        .collect();
    if messages.is_empty() {
        return Err(format!(
            "no messages under {}; pass --dir or set IOC_MILTER_CORPUS",
            options.dir.display()
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let messages = Arc::new(messages);
    let issued = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let tallies = runtime.block_on(async {
        let mut tasks = Vec::new();
        for id in 0..options.connections {
            tasks.push(tokio::spawn(run_connection(
                id,
                options.clone(),
                messages.clone(),
                issued.clone(),
                deadline,
                start,
            )));
        }
        let mut tallies = Vec::new();
        for task in tasks {
            match task.await {
                Ok(tally) => tallies.push(tally),
                Err(error) => eprintln!("a connection task failed: {error}"),
            }
        }
        tallies
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Tally::default();
    for tally in tallies {
        all.latencies_us.extend(tally.latencies_us);
        all.failed += tally.failed;
        all.accept += tally.accept;
        all.reject += tally.reject;
        all.other += tally.other;
    }
    all.latencies_us.sort_unstable();
    let done = all.latencies_us.len();
    let rate = done as f64 / elapsed;
    let (p50, p99, p999) = (
        percentile(&all.latencies_us, 50.0),
        percentile(&all.latencies_us, 99.0),
        percentile(&all.latencies_us, 99.9),
    );
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    println!(
        "{} {}: {} conns, {done} msgs in {elapsed:.2} s = {rate:.0} msg/s, \
         p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms, failed {}, \
         accept {} reject {} other {}, load {load}",
        options.label,
        options.target,
        options.connections,
        all.failed,
        all.accept,
        all.reject,
        all.other
    );
    println!(
        "{{\"label\":\"{}\",\"target\":\"{}\",\"connections\":{},\"messages\":{done},\
         \"seconds\":{elapsed:.3},\"rate\":{rate:.1},\"p50_ms\":{p50:.3},\"p99_ms\":{p99:.3},\
         \"p999_ms\":{p999:.3},\"failed\":{},\"load1\":\"{load}\"}}",
        options.label, options.target, options.connections, all.failed
    );
    Ok(())
}
