#!/usr/bin/env bash
# Mutation testing of the core (cargo-mutants; scope and exclusions in .cargo/mutants.toml).
#
#   .ci/mutants.sh           in-diff: only mutants on lines changed in the core since the base,
#                            bounded in time; fails on a survivor or hang not in the known list
#   .ci/mutants.sh --full    every mutant in scope (hours on 2 cores); records the result
#
# The base is the commit named in .cargo/mutants-base: the last commit whose full run is
# recorded (its survivors in .cargo/mutants-survivors.txt, its counts in docs/RELIABILITY.md).
# That works on a fresh clone of main, where no other ref exists to take a merge base with:
# "the change" is everything that landed in the core since the last full run. `--full` writes
# both files anew; commit them with the counts.
#
#   MUTANTS_BASE             another base commit (e.g. `git merge-base main HEAD` on a branch)
#   MUTANTS_BUDGET_SECONDS   time for the in-diff run (default 600). When the diff has more
#                            mutants than fit, a deterministic shard that fits is run, chosen
#                            by the number of commits since the base, so successive changes
#                            cover every shard; what was left untested is printed.
#   MUTANTS_SECONDS_EACH     estimated seconds per mutant on the CI machine, for that sizing
#   MUTANTS_JOBS             parallel builds (default 1: two cores, and each test run uses both)
#   MUTANTS_OUT              where mutants.out goes (default target/mutants)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the config keys and the output files read below are those of this version.
version=27.1.0
budget="${MUTANTS_BUDGET_SECONDS:-600}"
each="${MUTANTS_SECONDS_EACH:-30}"
jobs="${MUTANTS_JOBS:-1}"
out="${MUTANTS_OUT:-target/mutants}"
known=.cargo/mutants-survivors.txt
core_paths=(crates/annals/src)

full=false
case "${1:-}" in
    --full) full=true ;;
    "") ;;
    *) echo "usage: $0 [--full]" >&2; exit 2 ;;
esac

install() {
    if [ "$(cargo mutants --version 2>/dev/null)" != "cargo-mutants $version" ]; then
        echo "installing cargo-mutants $version"
        local start=$SECONDS
        cargo install cargo-mutants --version "$version" --locked --quiet
        echo "installed cargo-mutants in $((SECONDS - start)) s"
    fi
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "installing cargo-nextest"
        cargo install cargo-nextest --locked --quiet
    fi
}

# A mutant's name without its line and column, so that a survivor is still recognised after
# unrelated lines above it moved.
keys() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' "$@" | sort -u; }

# Every survivor (missed) and every hang (timeout) of the run in $out, as keys.
findings() { cat "$out/mutants.out/missed.txt" "$out/mutants.out/timeout.txt" 2>/dev/null | keys; }

# How many mutants the run in $out put in each outcome file (0 for a file not written yet).
count() { cat "$out/mutants.out/$1.txt" 2>/dev/null | wc -l; }

summary() {
    printf 'caught %s, survived %s, timeouts %s, unviable %s\n' \
        "$(count caught)" "$(count missed)" "$(count timeout)" "$(count unviable)"
}

mkdir -p "$out"

if $full; then
    install
    status=0
    nice -n 19 cargo mutants -p annals -j "$jobs" -o "$out" --no-shuffle || status=$?
    # 0: all caught; 2: survivors; 3: timeouts. Anything else is a broken run, recorded nowhere.
    case $status in 0 | 2 | 3) ;; *) echo "cargo mutants failed ($status)" >&2; exit "$status" ;; esac
    summary
    {
        echo "# Survivors (missed) and hangs (timeout) known at .cargo/mutants-base, one key a line:"
        echo "# file: mutant in function. Each wants a test; the in-diff check tolerates only these."
        findings
    } >"$known"
    {
        echo "# The commit the recorded mutation results describe ($known,"
        echo "# docs/RELIABILITY.md). .ci/mutants.sh tests the core lines changed since it."
        git rev-parse HEAD
    } >.cargo/mutants-base
    echo "wrote $known and .cargo/mutants-base ($(git rev-parse --short HEAD)); per-file counts:"
    awk -F: '{print $1}' "$out"/mutants.out/{caught,missed,timeout,unviable}.txt | sort | uniq -c
    exit 0
fi

base="${MUTANTS_BASE:-$(grep -v '^#' .cargo/mutants-base | head -n 1)}"
if ! git cat-file -e "$base^{commit}" 2>/dev/null || ! git merge-base --is-ancestor "$base" HEAD; then
    echo "mutants: base $base is not an ancestor of HEAD in this clone; testing the last commit only" >&2
    base=$(git rev-parse HEAD^1 2>/dev/null || git rev-parse HEAD)
fi
diff="$out/change.diff"
git diff --no-color "$base" HEAD -- "${core_paths[@]}" >"$diff"
echo "mutants: lines changed in the core since $(git rev-parse --short "$base"): $(grep -c '^+[^+]' "$diff" || true)"
if [ ! -s "$diff" ]; then
    echo "mutants: the core is unchanged since the base; nothing to test"
    exit 0
fi

install
total=$(cargo mutants -p annals --in-diff "$diff" --list | wc -l)
echo "mutants: $total mutants on changed lines"
if [ "$total" -eq 0 ]; then
    exit 0
fi
shards=$(((total * each + budget - 1) / budget))
shard_args=()
if [ "$shards" -gt 1 ]; then
    shard=$(($(git rev-list --count "$base..HEAD") % shards))
    shard_args=(--shard "$shard/$shards")
    echo "mutants: more than the ${budget} s budget holds; testing shard $shard of $shards" \
        "(~$((total / shards)) mutants); the rest wait for later changes or the full run"
fi

# In CI the clone is scratch: mutate it in place to reuse the test step's build, and restore it
# below whatever happens. Elsewhere cargo-mutants works on a copy and the tree is never touched.
place_args=(-j "$jobs")
if [ "${CI:-}" = true ]; then
    place_args=(--in-place) # one build directory, so no -j
    trap 'git checkout --quiet -- "${core_paths[@]}"' EXIT
fi

status=0
# The budget is also a hard stop (plus a margin for the last mutant): a slow machine tests
# fewer mutants, it does not stretch CI.
timeout --signal=INT --kill-after=60 "$((budget + 120))" \
    nice -n 19 cargo mutants -p annals -o "$out" --in-diff "$diff" "${shard_args[@]}" \
    "${place_args[@]}" --baseline skip --timeout 180 --no-shuffle || status=$?
case $status in
    0 | 2 | 3) ;;
    124 | 130) echo "mutants: stopped at the time budget; the mutants not reached are untested" ;;
    *) echo "cargo mutants failed ($status)" >&2; exit "$status" ;;
esac
if [ "${CI:-}" = true ] && ! git diff --quiet -- "${core_paths[@]}"; then
    echo "mutants: the tree was left mutated; restoring it" >&2
fi
summary

new=$(comm -23 <(findings) <(grep -v '^#' "$known" | sort -u))
if [ -n "$new" ]; then
    echo "mutants: survivors or hangs on changed lines that no test catches (details: $out/mutants.out):"
    echo "$new" | sed 's/^/  /'
    echo "Add a test that pins the behaviour, or, if the mutant cannot change behaviour, exclude it"
    echo "in .cargo/mutants.toml with a one-line reason."
    exit 1
fi
echo "mutants: no new survivor"
