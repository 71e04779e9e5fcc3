//! The whole inspection path under the built-in default policy: normalise, detect, decide and
//! redact, for requests and responses of typical sizes.
//!
//! `cargo bench -p palisade-engine --bench inspector`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use palisade_detect::sample::realistic_text;
use palisade_engine::Inspector;
use palisade_policy::Direction;

fn inspector(c: &mut Criterion) {
    let config = palisade_policy::load::default_config();
    let Ok(inspector) = Inspector::new(&config) else {
        return;
    };
    for (label, size) in [("200B", 200), ("4KiB", 4096), ("64KiB", 64 * 1024)] {
        let text = realistic_text(size);
        let mut group = c.benchmark_group(format!("inspect_default_policy/{label}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        for (name, direction) in [
            ("request", Direction::Request),
            ("response", Direction::Response),
        ] {
            group.bench_function(name, |b| {
                b.iter(|| inspector.inspect_text("default", direction, black_box(&text)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, inspector);
criterion_main!(benches);
