#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of untrusted text (libFuzzer, on the stable toolchain).
#
#   ./scripts/fuzz.sh                 # every target, FUZZ_SECONDS each (default 20)
#   FUZZ_SECONDS=600 ./scripts/fuzz.sh scan
#
# The targets live in fuzz/fuzz_targets. They are built with the same SanitizerCoverage flags
# cargo-fuzz uses (without AddressSanitizer, which needs a nightly compiler; the code is
# `unsafe`-free, so panics and aborts are what there is to find). A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(normalize decode scan config protocol sse websocket)

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target-dir target/fuzz --target "$host"

for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  artifacts=fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  # Seeds: the data-driven detector cases, so the fuzzer starts from realistic text.
  if [ -z "$(ls -A "$corpus")" ]; then
    i=0
    for f in crates/palisade-detect/testdata/*.jsonl crates/palisade-policy/src/default.yaml; do
      while IFS= read -r line; do
        i=$((i + 1)); printf '%s' "$line" > "$corpus/seed-$i"
      done < "$f"
    done
  fi
  echo "fuzz $t for ${seconds}s"
  target/fuzz/"$host"/release/"$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|#.*DONE)" || true
  if ls "$artifacts"/crash-* "$artifacts"/timeout-* >/dev/null 2>&1; then
    echo "fuzz $t found a failing input in $artifacts" >&2
    exit 1
  fi
done
