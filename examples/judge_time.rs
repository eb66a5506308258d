//! Time to judge each message of a directory, without the milter protocol.
//!
//! ```text
//! cargo run --release --example judge_time -- DIR [INDICATORS] [ROUNDS]
//! ```
//! Builds an engine with INDICATORS generated indicators (default
//! 1000000) and judges every file under DIR ROUNDS times (default 5) on
//! one thread. The fastest time per file counts, so the figures show the
//! work per message rather than the machine's noise. Prints the
//! percentiles over the files, the slowest files with their sizes, and a
//! JSON line for scripts.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ioc_milter::engine::{Engine, ReplyTexts};
use ioc_milter::extract::{ConnectionFacts, Envelope, Limits};
use ioc_milter::index::Snapshot;
use ioc_milter::milter::Judge;
use ioc_milter::policy::PolicyConfig;

/// Collects the regular files under `dir` and its subdirectories.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_under(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let position = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[position].as_secs_f64() * 1000.0
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("give the message directory")?);
    let count: usize = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("INDICATORS {text:?} is not a whole number"))?,
        None => 1_000_000,
    };
    let rounds: usize = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| format!("ROUNDS {text:?} is not a whole number"))?,
        None => 5,
    };

    let mut paths = Vec::new();
    files_under(&dir, &mut paths).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    paths.sort();
    let messages: Vec<(PathBuf, Vec<u8>)> = paths
        .into_iter()
        .filter_map(|path| std::fs::read(&path).ok().map(|bytes| (path, bytes)))
        .collect();
    if messages.is_empty() {
        return Err(format!("no readable files under {}", dir.display()));
    }

    let engine = Engine::new(
        PolicyConfig::default(),
        Limits::default(),
        ReplyTexts::default(),
        None,
    );
    engine.swap_index(Snapshot::build(common::indicators(count, 1).iter()));
    let conn = ConnectionFacts::default();
    let envelope = Envelope::default();

    let mut fastest = vec![Duration::MAX; messages.len()];
    for _ in 0..rounds.max(1) {
        for (index, (_, bytes)) in messages.iter().enumerate() {
            let started = Instant::now();
            std::hint::black_box(engine.judge_message(&conn, &envelope, bytes, false));
            fastest[index] = fastest[index].min(started.elapsed());
        }
    }

    let mut sorted = fastest.clone();
    sorted.sort();
    let (p50, p90, p99) = (
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.90),
        percentile(&sorted, 0.99),
    );
    let max = percentile(&sorted, 1.0);
    println!(
        "{} messages, {} indicators, fastest of {} rounds: p50 {p50:.3} ms, p90 {p90:.3} ms, p99 {p99:.3} ms, max {max:.3} ms",
        messages.len(),
        engine.index().len(),
        rounds
    );
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(fastest[index]));
    for &index in order.iter().take(5) {
        let (path, bytes) = &messages[index];
        println!(
            "  {:.3} ms  {:>7} bytes  {}",
            fastest[index].as_secs_f64() * 1000.0,
            bytes.len(),
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
    }
    println!(
        "{{\"messages\":{},\"indicators\":{},\"p50_ms\":{p50:.4},\"p90_ms\":{p90:.4},\"p99_ms\":{p99:.4},\"max_ms\":{max:.4}}}",
        messages.len(),
        engine.index().len()
    );
    Ok(())
}
