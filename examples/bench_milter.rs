//! ioc-milter's engine behind its milter server, with a generated index,
//! for throughput runs: the same judge the daemon uses, without feeds.
//!
//! ```text
//! cargo run --release --example bench_milter -- \
//!     [--listen inet:127.0.0.1:8994|unix:/path] [--indicators N] \
//!     [--swap-every SECONDS] [--max-seconds S]
//! ```
//! `--indicators 0` is the empty index. The values of the project's test
//! peers (203.0.113.7, evil-domain.example.net, ...) are always added, so
//! test messages that carry them match in ioc-milter and rspamd alike.
//! `--swap-every` rebuilds an index of the same size with a new seed on a
//! thread while mail flows and swaps it in after that interval. When the
//! rebuild takes longer (about 2.5 s for 1 million on 2 busy cores), the
//! swap comes when it ends. Each swap is printed with its time. The server
//! stops by itself after `--max-seconds` (default 900) or on Ctrl-C.
//!
//! `--dump-maps DIR` writes the same index as rspamd multimap files
//! (`ip.map`, `domain.map`, `url.map`, `hash.map`, `email.map`) and exits.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_milter::engine::{Engine, ReplyTexts};
use ioc_milter::extract::Limits;
use ioc_milter::index::Snapshot;
use ioc_milter::milter::{serve, Judge, Listener, ServerConfig};
use ioc_milter::policy::PolicyConfig;

fn value<T: std::str::FromStr>(flag: &str, text: Option<String>) -> Result<T, String> {
    let text = text.ok_or_else(|| format!("{flag} needs a value"))?;
    text.parse()
        .map_err(|_| format!("{flag} value {text:?} is not valid; give a whole number"))
}

fn snapshot(count: usize, seed: u64) -> Snapshot {
    let mut list = common::indicators(count, seed);
    list.extend(common::peer_indicators());
    Snapshot::build(list.iter())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut listen = "inet:127.0.0.1:8994".to_string();
    let mut count = 0usize;
    let mut swap_every = 0u64;
    let mut max_secs = 900u64;
    let mut dump: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--listen" => listen = value(&flag, args.next())?,
            "--indicators" => count = value(&flag, args.next())?,
            "--swap-every" => swap_every = value(&flag, args.next())?,
            "--max-seconds" => max_secs = value(&flag, args.next())?,
            "--dump-maps" => dump = Some(value(&flag, args.next())?),
            other => return Err(format!("unknown argument {other:?}; see the file header")),
        }
    }
    let listen = accept::loopback_listen(&listen)?;
    if let Some(dir) = dump {
        return dump_maps(&dir, count);
    }

    let engine = Arc::new(Engine::new(
        PolicyConfig::default(),
        Limits::default(),
        ReplyTexts::default(),
        None,
    ));
    let started = Instant::now();
    engine.swap_index(snapshot(count, 1));
    eprintln!(
        "index of {} indicators built in {:.2} s, rss {} MiB",
        engine.index().len(),
        started.elapsed().as_secs_f64(),
        common::rss_bytes().unwrap_or(0) >> 20
    );

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = (swap_every > 0).then(|| {
        let engine = engine.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut seed = 2u64;
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let next = Instant::now() + Duration::from_secs(swap_every);
                let fresh = snapshot(count, seed);
                seed += 1;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                engine.swap_index(fresh);
                swaps += 1;
                eprintln!("swap {swaps} at {:.2} s", started.elapsed().as_secs_f64());
            }
            eprintln!("swapped the index {swaps} times");
        })
    });

    let listener = Listener::bind(&listen, 0o666)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!("bench_milter listening on {listen} for at most {max_secs} s");
    let judge: Arc<dyn Judge> = engine.clone();
    let config: ServerConfig = accept::bench_server_config();
    let shutdown = async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let served = serve(listener, judge, config, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    if let Some(handle) = swapper {
        let _ = handle.join();
    }
    served.map_err(|e| format!("the bench milter failed: {e}"))
}

/// Writes the generated indicators (and the peer values) as rspamd maps.
fn dump_maps(dir: &std::path::Path, count: usize) -> Result<(), String> {
    use ioc_milter::index::IndicatorValue;
    use std::io::Write;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the maps directory {}: {e}", dir.display()))?;
    let open = |name: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .map(std::io::BufWriter::new)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let (mut ip, mut domain, mut url) = (open("ip.map")?, open("domain.map")?, open("url.map")?);
    let (mut hash, mut email) = (open("hash.map")?, open("email.map")?);
    let mut list = common::indicators(count, 1);
    list.extend(common::peer_indicators());
    for indicator in &list {
        let written = match &indicator.value {
            IndicatorValue::Ip(net) if net.prefix_len() == net.max_prefix_len() => {
                writeln!(ip, "{}", net.addr())
            }
            IndicatorValue::Ip(net) => writeln!(ip, "{net}"),
            IndicatorValue::Domain(d) => writeln!(domain, "{d}"),
            IndicatorValue::Url(u) => writeln!(url, "{u}"),
            IndicatorValue::Hash(h) => writeln!(hash, "{h}"),
            IndicatorValue::Email(e) => writeln!(email, "{e}"),
        };
        written.map_err(|e| format!("cannot write a map in {}: {e}", dir.display()))?;
    }
    for mut file in [ip, domain, url, hash, email] {
        file.flush()
            .map_err(|e| format!("cannot write a map in {}: {e}", dir.display()))?;
    }
    eprintln!(
        "wrote maps of {} indicators to {}",
        list.len(),
        dir.display()
    );
    Ok(())
}

#[allow(dead_code)]
#[path = "accept_milter.rs"]
mod accept;
