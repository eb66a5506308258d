//! State directory faults: a writer killed with SIGKILL in the middle of a
//! save, and damaged snapshot files at startup.
//!
//! The kill test runs this test binary again as the writer process: the
//! child runs only `writer_child`, which saves sets in a loop when
//! `IOC_MILTER_STATE_WRITER_DIR` is set and does nothing otherwise.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ioc_milter::config::{FileSource, SourceConfig, SourceKind};
use ioc_milter::feeds::manager::FeedManager;
use ioc_milter::feeds::SourceSet;
use ioc_milter::index::{Indicator, IndicatorType, IndicatorValue};
use ioc_milter::store::{Store, StoreError};
use rand::Rng;

const WRITER_DIR_VARIABLE: &str = "IOC_MILTER_STATE_WRITER_DIR";
const WRITER_GENERATION_VARIABLE: &str = "IOC_MILTER_STATE_WRITER_GENERATION";
const SOURCE: &str = "otx";
/// Indicators per saved set: about 2 MB of JSON, so a save takes long
/// enough that many kills land inside one.
const SET_SIZE: usize = 20_000;
const KILLS: usize = 15;

/// Builds a set of `size` distinct IP indicators.
fn base_set(size: usize) -> SourceSet {
    let mut indicators = Vec::with_capacity(size);
    for i in 0..size {
        let octets = u32::try_from(i).unwrap().to_be_bytes();
        let address = format!("10.{}.{}.{}", octets[1], octets[2], octets[3]);
        let value = IndicatorValue::parse(IndicatorType::Ip, &address).unwrap();
        indicators.push(Indicator::new(value, SOURCE, ""));
    }
    SourceSet {
        indicators,
        cursor: None,
        last_success: Some(Utc::now()),
        last_full_poll: None,
        ..SourceSet::default()
    }
}

/// Marks every indicator id of `set` with `generation`, so a loaded set
/// shows whether it is whole and from one save.
fn mark_generation(set: &mut SourceSet, generation: u64) {
    for (i, indicator) in set.indicators.iter_mut().enumerate() {
        indicator.id = format!("generation-{generation}:indicator-{i}");
    }
}

fn generation_set(generation: u64, size: usize) -> SourceSet {
    let mut set = base_set(size);
    mark_generation(&mut set, generation);
    set
}

/// Returns the generation of a loaded set, failing the test unless every
/// indicator belongs to it and none is missing.
fn whole_generation(set: &SourceSet) -> u64 {
    assert_eq!(set.indicators.len(), SET_SIZE);
    let first = set.indicators.first().unwrap();
    let generation: u64 = first
        .id
        .strip_prefix("generation-")
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .parse()
        .unwrap();
    let prefix = format!("generation-{generation}:");
    for (i, indicator) in set.indicators.iter().enumerate() {
        assert_eq!(indicator.id, format!("{prefix}indicator-{i}"));
    }
    generation
}

/// The writer process of `killed_writer_leaves_whole_set`. Saves new
/// generations until it is killed, for at most 30 seconds.
#[test]
fn writer_child() {
    let Ok(dir) = std::env::var(WRITER_DIR_VARIABLE) else {
        return;
    };
    let first: u64 = std::env::var(WRITER_GENERATION_VARIABLE)
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::open(&dir).unwrap();
    let mut set = base_set(SET_SIZE);
    let started = Instant::now();
    for generation in first.. {
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
        mark_generation(&mut set, generation);
        // The lines around each save let the parent aim its kill.
        println!("saving {generation}");
        std::io::stdout().flush().unwrap();
        let save_started = Instant::now();
        store.save(SOURCE, &set).unwrap();
        println!("saved {generation} {}", save_started.elapsed().as_micros());
        std::io::stdout().flush().unwrap();
    }
}

/// Starts a writer and returns it with a channel that receives its
/// `saving GENERATION` and `saved GENERATION MICROSECONDS` lines.
fn spawn_writer(dir: &Path, generation: u64) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(WRITER_DIR_VARIABLE, dir)
        .env(WRITER_GENERATION_VARIABLE, generation.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

/// Waits for the writer's next line that starts with `prefix`.
fn next_line(lines: &mpsc::Receiver<String>, prefix: &str) -> String {
    for _ in 0..1000 {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        if line.starts_with(prefix) {
            return line;
        }
    }
    panic!("the writer sent no line starting with {prefix:?}");
}

#[test]
fn killed_writer_leaves_whole_set() {
    // The target directory is on disk, where fsync takes real time; /tmp
    // may be a tmpfs where a save is too short to be hit.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(SOURCE, &generation_set(0, SET_SIZE)).unwrap();

    let mut rng = rand::rng();
    let mut last_generation = 0;
    let mut changed = 0;
    // Duration of one save as the writers report it, in microseconds.
    let mut save_micros: u64 = 50_000;
    for round in 1..=KILLS {
        let first_generation = u64::try_from(round).unwrap() * 1_000_000;
        let (mut child, lines) = spawn_writer(dir.path(), first_generation);
        // Let 0 to 2 saves finish, then kill at a random point of the next
        // save.
        let finished = rng.random_range(0..=2);
        for _ in 0..finished {
            let line = next_line(&lines, "saved ");
            if let Some(micros) = line.split(' ').nth(2) {
                save_micros = micros.parse().unwrap();
            }
        }
        next_line(&lines, "saving ");
        let delay = rng.random_range(0..=save_micros + save_micros / 4);
        std::thread::sleep(Duration::from_micros(delay));
        // Child::kill sends SIGKILL on unix.
        child.kill().unwrap();
        child.wait().unwrap();

        let set = store.load(SOURCE).unwrap().unwrap();
        let generation = whole_generation(&set);
        // The loaded set is the old one or one that a writer saved whole.
        assert!(generation >= last_generation);
        if finished > 0 {
            assert!(generation >= first_generation);
        }
        if generation != last_generation {
            changed += 1;
        }
        last_generation = generation;
    }
    assert!(changed > 0);

    // Each temporary file is a kill that landed inside a save, before its
    // rename. They are never loaded (see `leftover_temporary_ignored`).
    // `Store::open` removes them once their writer is gone.
    let temporaries = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".tmp")
        })
        .count();
    eprintln!("{KILLS} kills, {save_micros} µs per save: {changed} new sets kept, {temporaries} saves cut before the rename");
}

fn file_source(name: &str, dir: &Path) -> SourceConfig {
    SourceConfig {
        name: name.to_string(),
        description: None,
        kind: SourceKind::File(FileSource {
            path: dir.join(format!("{name}.xml")),
        }),
        suspended: false,
        polling_interval: Duration::from_secs(3600),
        age: Duration::from_secs(30 * 86_400),
        poll_segment: Duration::from_secs(86_400),
        timeout: Duration::from_secs(10),
        max_bytes: 1 << 20,
        max_parts: 10,
        max_indicators: 100_000,
        action: None,
    }
}

fn small_set(source: &str, domain: &str) -> SourceSet {
    let value = IndicatorValue::parse(IndicatorType::Domain, domain).unwrap();
    let mut indicator = Indicator::new(value, source, "example:Indicator-1");
    indicator.first_seen = Some(Utc::now());
    SourceSet {
        indicators: vec![indicator],
        cursor: Some(Utc::now()),
        last_success: Some(Utc::now()),
        last_full_poll: Some(Utc::now()),
        ..SourceSet::default()
    }
}

/// A `tracing` writer that keeps every line in memory.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }
}

/// Loads the state of a good source and a damaged one, with `damage`
/// written over the damaged source's set file. Returns the manager and the
/// log lines.
fn load_with_damaged_set(damage: &[u8]) -> (FeedManager, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    store
        .save("good", &small_set("good", "good.example.com"))
        .unwrap();
    store
        .save("damaged", &small_set("damaged", "damaged.example.com"))
        .unwrap();
    std::fs::write(store.set_path("damaged"), damage).unwrap();

    let sources = vec![
        file_source("damaged", dir.path()),
        file_source("good", dir.path()),
    ];
    let manager = FeedManager::new(sources, store).unwrap();
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let loaded = tracing::subscriber::with_default(subscriber, || manager.load_state());
    assert_eq!(loaded, 1);
    (manager, log.text(), dir)
}

fn truncated_set_bytes() -> Vec<u8> {
    let set = small_set("damaged", "damaged.example.com");
    let bytes = serde_json::to_vec(&set).unwrap();
    bytes[..bytes.len() / 2].to_vec()
}

#[test]
fn damaged_set_skipped_others_load() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated_set_bytes()),
        ("empty", Vec::new()),
        ("binary", vec![0x00, 0xff, 0x1f, 0x8b, 0x08, 0x00]),
        ("wrong type", b"{\"indicators\": 5}".to_vec()),
        ("wrong root", b"[1, 2, 3]".to_vec()),
        (
            "invalid address",
            b"{\"indicators\": [{\"value\": {\"type\": \"ip\", \"value\": \"300.1.1.1/32\"}, \"source\": \"damaged\", \"id\": \"x\"}]}".to_vec(),
        ),
    ];
    for (case, damage) in cases {
        let (manager, log, _dir) = load_with_damaged_set(&damage);

        let indicators = manager.indicators();
        assert_eq!(indicators.len(), 1, "{case}");
        assert_eq!(indicators[0].source, "good", "{case}");
        assert_eq!(
            indicators[0].value.to_string(),
            "good.example.com",
            "{case}"
        );
        assert!(
            log.contains("skipped the saved indicator set"),
            "{case}: {log}"
        );
        assert!(log.contains("damaged.set.json"), "{case}: {log}");
    }
}

#[test]
fn damaged_set_forces_full_poll() {
    let (manager, _log, _dir) = load_with_damaged_set(&truncated_set_bytes());
    let statuses = manager.statuses();
    let damaged = statuses.iter().find(|s| s.name == "damaged").unwrap();
    let good = statuses.iter().find(|s| s.name == "good").unwrap();

    // Without a cursor the next poll is full, so the damaged set is
    // rebuilt rather than extended by a delta.
    assert_eq!(damaged.cursor, None);
    assert_eq!(damaged.indicators, 0);
    assert!(good.cursor.is_some());
    assert_eq!(good.indicators, 1);
}

#[test]
fn truncated_file_error_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(SOURCE, &generation_set(7, 100)).unwrap();
    let path = store.set_path(SOURCE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();

    let error = store.load(SOURCE).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }));
    assert!(error.to_string().contains("otx.set.json"));
}

#[test]
fn leftover_temporary_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.save(SOURCE, &generation_set(3, 100)).unwrap();
    // What a writer killed before its rename leaves behind.
    let temporary = dir.path().join("otx.set.json.tmp999999");
    std::fs::write(&temporary, b"{\"indicators\": [").unwrap();

    let set = store.load(SOURCE).unwrap().unwrap();
    assert_eq!(set.indicators.len(), 100);
    assert_eq!(set.indicators[0].id, "generation-3:indicator-0");
}

/// The daemon starts with a damaged set file: it logs the file, skips it,
/// and judges mail with the other source's saved set.
#[tokio::test]
async fn daemon_starts_with_damaged_set() {
    use ioc_milter::milter::protocol::Reply;
    use ioc_milter::milter::{MtaClient, MtaMessage};

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).unwrap();
    store
        .save("good", &small_set("good", "good.example.com"))
        .unwrap();
    std::fs::write(store.set_path("damaged"), truncated_set_bytes()).unwrap();

    // Both file sources point at missing files, so their polls fail and
    // the saved sets stay in use.
    let socket = dir.path().join("milter.sock");
    let listen = format!("unix:{}", socket.display());
    let mut text = common::config_sections(dir.path(), &listen) + common::STATUS_PAGE_OFF;
    text.push_str(
        r#"
[policy]
default = "reject"
domain = "reject"
"#,
    );
    for name in ["damaged", "good"] {
        text.push_str(&format!(
            "\n[[source]]\nname = \"{name}\"\nkind = \"file\"\npath = \"{}\"\n",
            dir.path().join(format!("{name}.xml")).display()
        ));
    }
    let config = dir.path().join("ioc-milter.toml");
    std::fs::write(&config, text).unwrap();

    let mut daemon = common::Daemon::start_unix(&config, &socket, &[], &[]);
    let mut client = MtaClient::connect_unix(&socket).await.unwrap();
    client.set_timeout(Duration::from_secs(10));
    client.negotiate().await.unwrap();
    let peer = std::net::SocketAddr::from(([192, 0, 2, 7], 4321));
    client
        .connect_event("client.example.net", peer)
        .await
        .unwrap();
    client.helo("helo.example.net").await.unwrap();
    let message = MtaMessage {
        sender: "alice@example.net".into(),
        recipients: vec!["bob@example.org".into()],
        headers: vec![("Subject".into(), "link".into())],
        body: b"see http://good.example.com/login\r\n".to_vec(),
        queue_id: Some("4DAMAGED".into()),
    };
    let outcome = client.send_message(&message).await.unwrap();
    let _ = client.quit().await;

    let log = daemon.kill();

    let verdict = outcome.verdict().cloned();
    assert!(
        matches!(verdict, Some(Reply::ReplyCode { code: 550, .. })),
        "{verdict:?}\n{log}"
    );
    assert!(log.contains("skipped the saved indicator set"), "{log}");
    assert!(log.contains("damaged.set.json"), "{log}");
    // The match came from the good source's saved set.
    let matches = std::fs::read_to_string(dir.path().join("matches.jsonl")).unwrap();
    assert!(matches.contains("good.example.com"), "{matches}");
    assert!(matches.contains("\"good\""), "{matches}");
}
