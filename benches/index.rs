//! Criterion benchmarks: index lookups per observable type (hit and miss)
//! on 1 million generated indicators, index build time, and STIX 1.x and
//! STIX 2.1 parse rates. Memory and the 10 million case are in `examples/index_scale.rs`
//! (one process per size, so resident memory is the index's).
//!
//! ```text
//! cargo bench --bench index
//! ```

#[path = "../examples/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ioc_milter::extract::ObservableValue;
use ioc_milter::feeds::stix1::{self, ParseContext};
use ioc_milter::feeds::stix2;
use ioc_milter::index::{IndicatorType, Snapshot};

const INDEX_SIZE: usize = 1_000_000;

fn lookups(c: &mut Criterion) {
    let list = common::indicators(INDEX_SIZE, 1);
    let snapshot = Snapshot::build(list.iter());
    let misses = common::miss_observables(1000);
    let mut group = c.benchmark_group("lookup_1m");
    group.measurement_time(Duration::from_secs(3));
    for kind in [
        IndicatorType::Ip,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::Hash,
        IndicatorType::Email,
    ] {
        let hits: Vec<ObservableValue> = list
            .iter()
            .map(|i| common::observable_for(&i.value))
            .filter(|v| v.kind() == kind)
            .step_by(97)
            .take(1000)
            .collect();
        let miss: Vec<ObservableValue> = misses
            .iter()
            .filter(|v| v.kind() == kind)
            .cloned()
            .collect();
        for (name, values) in [("hit", hits), ("miss", miss)] {
            let mut next = 0usize;
            group.bench_function(BenchmarkId::new(kind.as_str(), name), |b| {
                b.iter(|| {
                    next = (next + 1) % values.len();
                    black_box(snapshot.lookup(black_box(&values[next])).len())
                })
            });
        }
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for count in [100_000usize, 1_000_000] {
        let list = common::indicators(count, 1);
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter(|| black_box(Snapshot::build(list.iter()).len()))
        });
    }
    group.finish();
}

fn stix1_ingest(c: &mut Criterion) {
    let package = common::stix1_package(100_000, 7);
    let context = ParseContext::new("bench");
    let mut group = c.benchmark_group("stix1_parse");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(package.len() as u64));
    group.bench_function(format!("{}_mb", package.len() >> 20), |b| {
        b.iter(|| {
            let outcome = stix1::parse(black_box(&package), &context);
            black_box(outcome.map(|o| o.indicators.len()).unwrap_or(0))
        })
    });
    group.finish();
}

fn stix2_ingest(c: &mut Criterion) {
    let bundle = common::stix2_bundle(100_000, 7);
    let mut group = c.benchmark_group("stix2_parse");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(bundle.len() as u64));
    group.bench_function(format!("{}_mb", bundle.len() >> 20), |b| {
        b.iter(|| {
            let objects = stix2::parse_document(black_box(&bundle), "bench");
            black_box(
                objects
                    .map(|o| o.into_outcome().indicators.len())
                    .unwrap_or(0),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, build, stix1_ingest, stix2_ingest);
criterion_main!(benches);
