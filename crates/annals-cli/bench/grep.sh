#!/usr/bin/env bash
# `annals grep` against `grep -r` on the same store, with hyperfine (docs/BENCHMARKS.md).
#
#   crates/annals-cli/bench/grep.sh [DIR] [GIB]
#
# Builds, under DIR (default: a fresh temporary directory), the demo store (`annals demo`, its
# default size) and a real-shaped store of GIB GiB of entry JSON (default 1; sizes as in
# issue 18, written through `annals append`), then times a full scan (a pattern found nowhere),
# a rare fixed string, a regex and a case-insensitive search on each. Both tools read the same
# files: grep -r sees segment lines and blob files as they are on disk; annals grep checks every
# line's CRC and sequence number and re-inflates (and checks) every blob.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dir="${1:-$(mktemp -d)}"
gib="${2:-1}"
annals="$repo/target/release/annals"
(cd "$repo" && cargo build --release -q -p annals-cli)
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }

demo="$dir/demo"
if [ ! -d "$demo" ]; then
  "$annals" demo --root "$demo" >/dev/null
fi

big="$dir/real-${gib}g"
if [ ! -d "$big" ]; then
  per=$((5 << 20))
  sessions=$(( (gib << 30) / per ))
  for i in $(seq 1 "$sessions"); do
    python3 "$here/real_shaped.py" "$i" "$per" |
      "$annals" --root "$big" append "$(cat /proc/sys/kernel/random/uuid)" \
        "$(cat /proc/sys/kernel/random/uuid)" --create -q
  done
fi

for store in "$demo" "$big"; do
  echo "== $store: $(du -sh --apparent-size "$store" | cut -f1) in $(find "$store" -type f | wc -l) files"
  "$annals" --root "$store" stats | sed -n '2,6p'
  run() {
    hyperfine --style basic -N --warmup 1 --runs "${RUNS:-5}" -i \
      --command-name "annals grep $1" "$annals --root $store grep $1" \
      --command-name "grep -r $2" "grep -r $2 $store"
  }
  run "-F no-such-token-anywhere" "-F no-such-token-anywhere"
  run "-F NEEDLE-" "-F NEEDLE-"
  run "'timeout_s|FAILED'" "-E 'timeout_s|FAILED'"
  run "-i -F pool::builder" "-i -F pool::builder"
done
