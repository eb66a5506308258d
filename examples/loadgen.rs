//! Milter load generator. It plays the MTA side of milter protocol 6
//! (through `MtaClient`) against a milter on loopback and replays a
//! directory of .eml files (or generated messages) over N concurrent
//! connections. It reports messages per second, the latency of each
//! message from MAIL FROM to the end-of-message reply at p50, p99 and
//! p99.9, and a tally of the verdicts.
//!
//! ```text
//! cargo run --release --example loadgen -- --target inet:127.0.0.1:8994 \
//!     --dir "$IOC_MILTER_CORPUS/mail/phish" [--generate N] [--connections 16] \
//!     [--count 20000] [--seconds 20] [--rate MSGS_PER_S] [--threads 1] \
//!     [--probe FILE] [--probe-every 100] [--progress-seconds 0] [--strict] \
//!     [--label NAME]
//! ```
//! The run stops at `--count` messages or after `--seconds`, whichever
//! comes first (both are capped: 1,000,000 messages, 7,200 s). `--rate`
//! paces the messages (open loop, spread over the connections) instead of
//! sending as fast as the milter replies. `--generate N` replays N
//! synthetic messages instead of `--dir`. `--probe FILE` sends that message
//! as every `--probe-every`-th message and tallies its verdicts apart, so a
//! run can show that index swaps change the verdict of a known message.
//! `--progress-seconds S` prints the messages done to stderr every S
//! seconds. With `--strict` the exit status is 1 when a message got no
//! verdict, a connection failed, or the run ended before `--count`.
//!
//! Each connection sends CONNECT and HELO once, then one message after
//! another, with the macros `MtaClient` sends (Postfix's `j`,
//! `{daemon_name}`, `{client_addr}`, `i`, `{mail_addr}`, `{rcpt_addr}`).
//! After an error it counts the message as one without a verdict and opens
//! a new connection (at most 20 failed attempts in a row).
//!
//! Verdicts are named after the milter's actions: `accept` (ACCEPT or
//! CONTINUE), `tag` (ADDHEADER, then accept), `quarantine` (QUARANTINE,
//! then accept), `tempfail` (TEMPFAIL or a 4xx REPLYCODE), `reject` (REJECT
//! or a 5xx REPLYCODE) and `discard`. Any other last reply is no verdict.
//! stdout gets two lines: a summary for people, then the same as JSON.

#[path = "common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_milter::config::ListenAddr;
use ioc_milter::milter::{ClientError, MessageReplies, MtaClient, MtaMessage, Reply};
use serde_json::json;

const MAX_COUNT: u64 = 1_000_000;
const MAX_SECONDS: u64 = 7_200;
const MAX_GENERATED: usize = 100_000;

/// Failed connection attempts in a row after which a connection gives up.
const MAX_FAILED_ATTEMPTS: u32 = 20;
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// Error lines printed per connection; later errors are only counted.
const MAX_ERROR_LINES: u64 = 10;

/// Verdict names, in the order of `Tally::verdicts`.
const VERDICTS: [&str; 6] = [
    "accept",
    "tag",
    "quarantine",
    "tempfail",
    "reject",
    "discard",
];

struct Options {
    target: ListenAddr,
    dir: PathBuf,
    generate: usize,
    connections: usize,
    count: u64,
    seconds: u64,
    rate: f64,
    threads: usize,
    probe: Option<PathBuf>,
    probe_every: u64,
    progress_seconds: u64,
    strict: bool,
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
        generate: 0,
        connections: 4,
        count: 10_000,
        seconds: 20,
        rate: 0.0,
        threads: 1,
        probe: None,
        probe_every: 100,
        progress_seconds: 0,
        strict: false,
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--target" => options.target = parse_target(&value::<String>(&flag, args.next())?)?,
            "--dir" => options.dir = value(&flag, args.next())?,
            "--generate" => options.generate = value(&flag, args.next())?,
            "--connections" => options.connections = value(&flag, args.next())?,
            "--count" => options.count = value(&flag, args.next())?,
            "--seconds" => options.seconds = value(&flag, args.next())?,
            "--rate" => options.rate = value(&flag, args.next())?,
            "--threads" => options.threads = value(&flag, args.next())?,
            "--probe" => options.probe = Some(value(&flag, args.next())?),
            "--probe-every" => options.probe_every = value(&flag, args.next())?,
            "--progress-seconds" => options.progress_seconds = value(&flag, args.next())?,
            "--strict" => options.strict = true,
            "--label" => options.label = value(&flag, args.next())?,
            other => return Err(format!("unknown argument {other:?}; see the file header")),
        }
    }
    options.connections = options.connections.clamp(1, 1024);
    options.count = options.count.clamp(1, MAX_COUNT);
    options.seconds = options.seconds.clamp(1, MAX_SECONDS);
    options.threads = options.threads.clamp(1, 8);
    options.generate = options.generate.min(MAX_GENERATED);
    options.probe_every = options.probe_every.max(1);
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

/// Returns the index in [`VERDICTS`] of the verdict that `replies` give, or
/// `None` when the last reply is not a verdict.
fn classify(replies: &MessageReplies) -> Option<usize> {
    let position = |name: &str| VERDICTS.iter().position(|v| *v == name);
    match replies.verdict()? {
        Reply::Accept | Reply::Continue => {
            let quarantined = replies
                .replies
                .iter()
                .any(|r| matches!(r, Reply::Quarantine(_)));
            let tagged = replies
                .replies
                .iter()
                .any(|r| matches!(r, Reply::AddHeader { .. }));
            if quarantined {
                position("quarantine")
            } else if tagged {
                position("tag")
            } else {
                position("accept")
            }
        }
        Reply::Tempfail => position("tempfail"),
        Reply::Reject => position("reject"),
        Reply::Discard => position("discard"),
        Reply::ReplyCode { code, .. } => match code / 100 {
            4 => position("tempfail"),
            5 => position("reject"),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    verdicts: [u64; VERDICTS.len()],
    no_verdict: u64,
    /// Connect, negotiate, CONNECT or HELO failed.
    setup_errors: u64,
    /// Errors during a message, by kind.
    connection_errors: u64,
    protocol_errors: u64,
    timeouts: u64,
    reconnects: u64,
    probe_verdicts: [u64; VERDICTS.len()],
    probe_no_verdict: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (sum, part) in self.verdicts.iter_mut().zip(other.verdicts) {
            *sum += part;
        }
        for (sum, part) in self.probe_verdicts.iter_mut().zip(other.probe_verdicts) {
            *sum += part;
        }
        self.no_verdict += other.no_verdict;
        self.setup_errors += other.setup_errors;
        self.connection_errors += other.connection_errors;
        self.protocol_errors += other.protocol_errors;
        self.timeouts += other.timeouts;
        self.reconnects += other.reconnects;
        self.probe_no_verdict += other.probe_no_verdict;
    }

    fn with_verdict(&self) -> u64 {
        self.verdicts.iter().sum()
    }

    /// Counts a message that ended with an error instead of replies.
    fn count_error(&mut self, error: &ClientError) {
        match error {
            ClientError::Timeout(_) => self.timeouts += 1,
            ClientError::Io(_) | ClientError::Closed => self.connection_errors += 1,
            ClientError::Protocol(_)
            | ClientError::TooLarge { .. }
            | ClientError::Unexpected(_) => self.protocol_errors += 1,
        }
    }
}

fn verdict_map(counts: &[u64; VERDICTS.len()]) -> serde_json::Map<String, serde_json::Value> {
    VERDICTS
        .iter()
        .zip(counts)
        .map(|(name, count)| (name.to_string(), json!(count)))
        .collect()
}

/// Connects and sends negotiation, CONNECT and HELO.
async fn open(id: usize, target: &ListenAddr) -> Result<MtaClient, String> {
    let mut client = MtaClient::connect(target)
        .await
        .map_err(|error| format!("cannot connect to {target}: {error}"))?;
    client.set_timeout(Duration::from_secs(30));
    let client_ip = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        40000 + (id % 20000) as u16,
    );
    client
        .negotiate()
        .await
        .map_err(|error| format!("negotiation failed: {error}"))?;
    client
        .connect_event("unknown", client_ip)
        .await
        .map_err(|error| format!("CONNECT failed: {error}"))?;
    client
        .helo("loadgen.example")
        .await
        .map_err(|error| format!("HELO failed: {error}"))?;
    Ok(client)
}

/// The messages a run replays, and the probe sent in between.
struct Workload {
    messages: Vec<MtaMessage>,
    probe: Option<MtaMessage>,
}

struct Shared {
    options: Options,
    workload: Workload,
    issued: AtomicU64,
    completed: AtomicU64,
    start: Instant,
    deadline: Instant,
}

async fn run_connection(id: usize, shared: Arc<Shared>) -> Tally {
    let options = &shared.options;
    let mut tally = Tally::default();
    let mut client: Option<MtaClient> = None;
    let mut connected_before = false;
    let mut failed_attempts = 0u32;
    let mut error_lines = 0u64;
    loop {
        if Instant::now() >= shared.deadline
            || shared.issued.load(Ordering::Relaxed) >= options.count
        {
            break;
        }
        let Some(connection) = client.as_mut() else {
            match open(id, &options.target).await {
                Ok(opened) => {
                    client = Some(opened);
                    if connected_before {
                        tally.reconnects += 1;
                    }
                    connected_before = true;
                }
                Err(error) => {
                    tally.setup_errors += 1;
                    failed_attempts += 1;
                    eprintln!("connection {id}: {error}");
                    if failed_attempts >= MAX_FAILED_ATTEMPTS {
                        eprintln!("connection {id}: giving up after {failed_attempts} failed attempts in a row");
                        break;
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            }
            continue;
        };
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= options.count {
            break;
        }
        if options.rate > 0.0 {
            let due = shared.start + Duration::from_secs_f64(n as f64 / options.rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let is_probe = n % options.probe_every == options.probe_every - 1;
        let probe = shared.workload.probe.as_ref().filter(|_| is_probe);
        let messages = &shared.workload.messages;
        let Some(message) = probe.or_else(|| messages.get(n as usize % messages.len())) else {
            break;
        };
        let began = Instant::now();
        let result = connection.send_message(message).await;
        shared.completed.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(replies) => {
                failed_attempts = 0;
                let micros = began.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
                match classify(&replies) {
                    Some(verdict) => {
                        tally.verdicts[verdict] += 1;
                        if probe.is_some() {
                            tally.probe_verdicts[verdict] += 1;
                        }
                    }
                    None => {
                        tally.no_verdict += 1;
                        if probe.is_some() {
                            tally.probe_no_verdict += 1;
                        }
                        error_lines += 1;
                        if error_lines <= MAX_ERROR_LINES {
                            eprintln!(
                                "connection {id}: message {n} got no verdict, replies {:?}",
                                replies.replies
                            );
                        }
                    }
                }
            }
            Err(error) => {
                tally.no_verdict += 1;
                if probe.is_some() {
                    tally.probe_no_verdict += 1;
                }
                tally.count_error(&error);
                error_lines += 1;
                if error_lines <= MAX_ERROR_LINES {
                    eprintln!("connection {id}: message {n} failed: {error}; reconnecting");
                }
                client = None;
            }
        }
    }
    if let Some(mut connection) = client {
        let _ = connection.quit().await;
    }
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

fn load_workload(options: &Options) -> Result<Workload, String> {
    let messages: Vec<MtaMessage> = if options.generate > 0 {
        common::generated_messages(options.generate, 0x50a4)
            .iter()
            .enumerate()
            .map(|(n, raw)| to_mta_message(raw, n))
            .collect()
    } else {
        common::files_under(&options.dir, 100_000)
            .iter()
            .enumerate()
            .filter_map(|(n, path)| std::fs::read(path).ok().map(|raw| to_mta_message(&raw, n)))
            .collect()
    };
    if messages.is_empty() {
        return Err(format!(
            "no messages under {:?}; pass --dir, set IOC_MILTER_CORPUS or pass --generate N",
            options.dir.display().to_string()
        ));
    }
    let probe = match &options.probe {
        Some(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| format!("cannot read the probe message {}: {e}", path.display()))?;
            Some(to_mta_message(&raw, 0x0FFF_FFFF))
        }
        None => None,
    };
    Ok(Workload { messages, probe })
}

/// Prints the messages done every `every` until the task is aborted.
async fn report_progress(shared: Arc<Shared>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let done = shared.completed.load(Ordering::Relaxed);
        let seconds = shared.start.elapsed().as_secs_f64();
        eprintln!(
            "loadgen: {done} messages in {seconds:.0} s ({:.0} msg/s)",
            done as f64 / seconds.max(0.001)
        );
    }
}

fn run(options: Options) -> Result<bool, String> {
    let workload = load_workload(&options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: start + Duration::from_secs(options.seconds),
        options,
        workload,
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        start,
    });
    let all = runtime.block_on(async {
        let progress = (shared.options.progress_seconds > 0).then(|| {
            let every = Duration::from_secs(shared.options.progress_seconds);
            tokio::spawn(report_progress(shared.clone(), every))
        });
        let mut tasks = Vec::new();
        for id in 0..shared.options.connections {
            tasks.push(tokio::spawn(run_connection(id, shared.clone())));
        }
        let mut all = Tally::default();
        for task in tasks {
            match task.await {
                Ok(tally) => all.add(tally),
                Err(error) => eprintln!("a connection task failed: {error}"),
            }
        }
        if let Some(progress) = progress {
            progress.abort();
        }
        all
    });
    let options = &shared.options;
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = all;
    all.latencies_us.sort_unstable();
    let messages = all.with_verdict() + all.no_verdict;
    let rate = messages as f64 / elapsed;
    let (p50, p99, p999) = (
        percentile(&all.latencies_us, 50.0),
        percentile(&all.latencies_us, 99.0),
        percentile(&all.latencies_us, 99.9),
    );
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default();
    let failed = all.no_verdict + all.setup_errors;
    let tally_text: Vec<String> = VERDICTS
        .iter()
        .zip(all.verdicts)
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "{} {}: {} conns, {messages} msgs in {elapsed:.2} s = {rate:.0} msg/s, \
         p50 {p50:.3} ms, p99 {p99:.3} ms, p99.9 {p999:.3} ms, failed {failed}, \
         {}, no verdict {}, load {load}",
        options.label,
        options.target,
        options.connections,
        tally_text.join(" "),
        all.no_verdict,
    );
    let mut probe = verdict_map(&all.probe_verdicts);
    probe.insert("no_verdict".into(), json!(all.probe_no_verdict));
    let summary = json!({
        "label": options.label,
        "target": options.target.to_string(),
        "connections": options.connections,
        "requested": options.count,
        "messages": messages,
        "with_verdict": all.with_verdict(),
        "no_verdict": all.no_verdict,
        "verdicts": verdict_map(&all.verdicts),
        "probe": probe,
        "setup_errors": all.setup_errors,
        "connection_errors": all.connection_errors,
        "protocol_errors": all.protocol_errors,
        "timeouts": all.timeouts,
        "reconnects": all.reconnects,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "rate": (rate * 10.0).round() / 10.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "failed": failed,
        "load1": load,
    });
    println!("{summary}");
    let complete = messages == options.count && failed == 0;
    if options.strict && !complete {
        eprintln!(
            "loadgen: {messages} of {} messages sent, {} without a verdict, {} failed connection attempts",
            options.count, all.no_verdict, all.setup_errors
        );
    }
    Ok(complete || !options.strict)
}

fn main() -> ExitCode {
    let outcome = options().and_then(run);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::from(2)
        }
    }
}
