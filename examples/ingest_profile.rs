//! Parse rate of generated STIX 1.x and STIX 2.1 documents, for profiling
//! (`valgrind --tool=callgrind`) and quick checks outside criterion.
//!
//! ```text
//! cargo run --release --example ingest_profile -- stix1|stix2 [COUNT] [ROUNDS]
//! ```
//! Generates one document of COUNT indicators (default 100000) with the
//! generators the benches use and parses it ROUNDS times (default 5). It
//! prints the size, the indicator count and the fastest round in MiB/s,
//! by wall time and by the CPU time of this process. On a shared machine the
//! CPU figure moves less with the load than the wall figure does.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use ioc_milter::feeds::stix1::{self, ParseContext};
use ioc_milter::feeds::stix2;

fn number(arg: Option<String>, default: usize, name: &str) -> Result<usize, String> {
    match arg {
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name} {text:?} is not a whole number")),
        None => Ok(default),
    }
}

/// Returns the CPU time this process has run, in seconds, from the first
/// field of `/proc/self/schedstat` (nanoseconds on the CPU, Linux only).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let nanoseconds: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds as f64 / 1e9)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_else(|| "stix1".to_string());
    let count = number(args.next(), 100_000, "COUNT")?;
    let rounds = number(args.next(), 5, "ROUNDS")?.max(1);

    let document = match format.as_str() {
        "stix1" => common::stix1_package(count, 7),
        "stix2" => common::stix2_bundle(count, 7),
        other => return Err(format!("format {other:?} is not stix1 or stix2")),
    };
    let context = ParseContext::new("bench");
    let mut fastest = f64::INFINITY;
    let mut fastest_cpu = f64::INFINITY;
    let mut indicators = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let cpu_started = cpu_seconds();
        indicators = match format.as_str() {
            "stix1" => stix1::parse(black_box(&document), &context)
                .map_err(|e| e.to_string())?
                .indicators
                .len(),
            _ => stix2::parse_document(black_box(&document), "bench")?
                .into_outcome()
                .indicators
                .len(),
        };
        fastest = fastest.min(started.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu_started, cpu_seconds()) {
            fastest_cpu = fastest_cpu.min(after - before);
        }
    }
    let mib = document.len() as f64 / (1024.0 * 1024.0);
    println!(
        "{format}: {mib:.1} MiB, {indicators} indicators, fastest of {rounds}: \
         wall {fastest:.3} s ({:.1} MiB/s), CPU {fastest_cpu:.3} s ({:.1} MiB/s)",
        mib / fastest,
        mib / fastest_cpu
    );
    Ok(())
}
