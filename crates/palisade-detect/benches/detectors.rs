//! Criterion benches: each built-in detector and the full default set, on a short prompt (200 B),
//! a typical body (4 KiB) and a large document (1 MiB), plus adversarial inputs that would expose
//! super-linear behaviour.
//!
//! `cargo bench -p palisade-detect --bench detectors`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_detect::sample::{adversarial_inputs, realistic_text};
use palisade_detect::{builtin_detector, DetectorId, DetectorSet, NormalizeOptions, Normalized};

const SIZES: [(&str, usize); 3] = [("200B", 200), ("4KiB", 4096), ("1MiB", 1 << 20)];

fn detectors(c: &mut Criterion) {
    let options = NormalizeOptions::default();
    for (label, size) in SIZES {
        let text = realistic_text(size);
        let mut group = c.benchmark_group(format!("detector/{label}"));
        group.throughput(Throughput::Bytes(text.len() as u64));
        if size > 100_000 {
            group.sample_size(10);
        }
        group.bench_function("normalize", |b| {
            b.iter(|| Normalized::new(black_box(&text), &options))
        });
        for id in DetectorId::ALL {
            let Some(d) = builtin_detector(id) else {
                continue;
            };
            let input = Normalized::new(&text, &options);
            group.bench_function(id.as_str(), |b| {
                b.iter(|| {
                    let mut out = Vec::new();
                    d.detect(black_box(&input), &mut out);
                    out
                })
            });
        }
        let set = DetectorSet::builtin();
        group.bench_function("full_default_set", |b| {
            b.iter(|| set.scan(black_box(&text)))
        });
        group.finish();
    }
}

fn adversarial(c: &mut Criterion) {
    let set = DetectorSet::builtin();
    let mut group = c.benchmark_group("adversarial");
    group.sample_size(10);
    for (name, text) in adversarial_inputs(256 * 1024) {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("full_default_set", name), &text, |b, t| {
            b.iter(|| set.scan(black_box(t)))
        });
    }
    group.finish();
}

criterion_group!(benches, detectors, adversarial);
criterion_main!(benches);
