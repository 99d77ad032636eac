#!/usr/bin/env bash
# Bounded fuzzing of the cargo-fuzz targets in fuzz/ (libFuzzer, nightly Rust).
#
#   FUZZ_SECONDS   seconds per target (default 60)
#   FUZZ_TARGETS   space-separated subset of targets (default: all)
#
# Skips (exit 0) when there is no nightly toolchain. Installs cargo-fuzz if missing. Any crash
# fails the script and prints where libFuzzer saved the input. New corpus entries go to a
# scratch directory under fuzz/target, so the checked-in corpus is only read.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-line_decoder replay_image store_ops blob_pack}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "skipping fuzzing: no nightly toolchain"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked
fi

# The fuzz crate has its own workspace and target dir; a CARGO_TARGET_DIR meant for the main
# workspace would mix sanitizer builds with normal ones.
unset CARGO_TARGET_DIR
target_dir="fuzz/target"
work="$target_dir/fuzz-work"
mkdir -p "$work"

echo "building fuzz targets"
cargo +nightly fuzz build --target-dir "$target_dir"

failed=()
for t in $targets; do
    case "$t" in
        line_decoder) args=(-max_len=8192 -dict=fuzz/dict/annals.dict) ;;
        replay_image) args=(-max_len=262144 -dict=fuzz/dict/annals.dict) ;;
        store_ops) args=(-max_len=4096) ;;
        # No allocation above 64 MiB: the store's largest entry here is 1 MiB, whatever a
        # header claims.
        blob_pack) args=(-max_len=65536 -dict=fuzz/dict/pack.dict -malloc_limit_mb=64) ;;
        *) echo "unknown fuzz target $t" >&2; exit 2 ;;
    esac
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t/"
    log="$work/$t.log"
    rm -rf "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzzing $t for ${seconds}s"
    status=0
    cargo +nightly fuzz run --target-dir "$target_dir" "$t" "$corpus" "fuzz/corpus/$t" -- \
        "${args[@]}" -max_total_time="$seconds" -rss_limit_mb=512 -timeout=30 \
        -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1 || true)
    echo "$t: ${runs:-?} executions in ${seconds}s (${cov:-no coverage line}), exit $status"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        tail -n 40 "$log"
        grep -E 'Test unit written to|artifact_prefix' "$log" || true
        ls -1 "$artifacts" | sed "s|^|crash artifact: $artifacts|"
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (reproduce: cargo +nightly fuzz run <target> <artifact>)"
    exit 1
fi
echo "fuzzing: no crashes"
