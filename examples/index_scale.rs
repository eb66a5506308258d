//! Index build time, resident memory and lookup time at scale.
//!
//! ```text
//! cargo run --release --example index_scale -- [COUNT]     # default 1000000
//! ```
//! Generates COUNT mixed indicators (see `common::indicators`), builds a
//! snapshot, drops the input list and returns freed memory to the system
//! (`malloc_trim`), then reports the resident memory of the process, which
//! is then the snapshot plus the program itself. Lookup time per observable
//! type is the median of 201 batch means, each batch 1,000 lookups. Hits
//! look up stored values, and misses look up values that are not stored. Run one COUNT per process, so one run's memory does not
//! count in the next. The last line is JSON for scripts.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use ioc_milter::extract::ObservableValue;
use ioc_milter::index::{IndicatorType, Snapshot};

const BATCH: usize = 1000;
const BATCHES: usize = 201;

fn median_ns(snapshot: &Snapshot, values: &[ObservableValue]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut per_batch = Vec::with_capacity(BATCHES);
    let mut next = 0usize;
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..BATCH {
            let value = &values[next % values.len()];
            next += 1;
            black_box(snapshot.lookup(black_box(value)));
        }
        per_batch.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    per_batch.sort_by(f64::total_cmp);
    per_batch[BATCHES / 2]
}

fn main() -> Result<(), String> {
    let count: usize = match std::env::args().nth(1) {
        Some(text) => text
            .parse()
            .map_err(|_| format!("COUNT {text:?} is not a whole number"))?,
        None => 1_000_000,
    };
    let base = common::rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let list = common::indicators(count, 1);
    let generated = started.elapsed().as_secs_f64();
    let with_input = common::rss_bytes().unwrap_or(0);

    let started = Instant::now();
    let snapshot = Snapshot::build(list.iter());
    let build = started.elapsed().as_secs_f64();
    let peak = common::rss_bytes().unwrap_or(0);

    // Hit samples: every type, spread over the list.
    let kinds = [
        IndicatorType::Ip,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::Hash,
        IndicatorType::Email,
    ];
    let step = (list.len() / 200_000).max(1);
    let mut hits: Vec<Vec<ObservableValue>> = vec![Vec::new(); kinds.len()];
    for indicator in list.iter().step_by(step) {
        let value = common::observable_for(&indicator.value);
        if let Some(slot) = kinds.iter().position(|k| *k == value.kind()) {
            hits[slot].push(value);
        }
    }
    drop(list);
    // SAFETY: malloc_trim only releases free heap pages; no pointers change.
    unsafe {
        libc::malloc_trim(0);
    }
    let resident = common::rss_bytes().unwrap_or(0);

    let misses = common::miss_observables(20_000);
    let mut json = format!(
        "{{\"indicators\":{},\"build_s\":{build:.3},\"rss_mib\":{:.1},\"base_mib\":{:.1}",
        snapshot.len(),
        resident as f64 / 1048576.0,
        base as f64 / 1048576.0
    );
    println!(
        "{} indicators: generated in {generated:.2} s (rss with input {} MiB), \
         built in {build:.2} s (peak rss {} MiB), rss after dropping the input {} MiB \
         (process base {} MiB)",
        snapshot.len(),
        with_input >> 20,
        peak >> 20,
        resident >> 20,
        base >> 20
    );
    for (slot, kind) in kinds.iter().enumerate() {
        let miss: Vec<ObservableValue> = misses
            .iter()
            .filter(|v| v.kind() == *kind)
            .cloned()
            .collect();
        let hit_ns = median_ns(&snapshot, &hits[slot]);
        let miss_ns = median_ns(&snapshot, &miss);
        println!(
            "  {kind:<6} hit {hit_ns:7.1} ns  miss {miss_ns:7.1} ns  ({} hit samples)",
            hits[slot].len()
        );
        json.push_str(&format!(
            ",\"{kind}_hit_ns\":{hit_ns:.1},\"{kind}_miss_ns\":{miss_ns:.1}"
        ));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json.push_str(&format!(
        ",\"load1\":\"{}\"}}",
        load.split_whitespace().next().unwrap_or("")
    ));
    println!("{json}");
    Ok(())
}
