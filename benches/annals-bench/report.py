#!/usr/bin/env python3
"""Turns criterion's JSON estimates into the markdown tables of docs/BENCHMARKS.md.

Usage: python3 benches/annals-bench/report.py [CRITERION_DIR] > tables.md

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion. Every benchmark
found there (`<group>/<function>/<parameter>/new/{benchmark,estimates}.json`) becomes a cell:
the median time per iteration. One table per group, one row per parameter, one column per
contender, then ratio columns, then the verdict on each of the issue's targets. Standard
library only.
"""

import json
import os
import re
import sys
from collections import OrderedDict

# Column order: annals first, then the baselines.
FUNCTION_ORDER = [
    "annals",
    "annals_typed",
    "annals_verify",
    "annals_replay_raw",
    "annals_uncached",
    "annals_cached",
    "naive",
    "naive_json_check",
    "floor",
    "sqlite",
    "sqlite_uncached",
    "sqlite_cached",
    "serde_floor",
]

# Ratio columns: (a, b) shows t_a / t_b. "naive ÷ annals" = how many times faster annals is;
# "annals ÷ floor" = how far annals is above the floor.
DEFAULT_RATIOS = [("naive", "annals"), ("sqlite", "annals"), ("annals", "floor")]
RATIOS = {
    "entry_count": [
        ("naive", "annals_uncached"),
        ("sqlite_uncached", "annals_uncached"),
        ("sqlite_cached", "annals_cached"),
    ],
    "replay_typed": [("naive", "annals"), ("sqlite", "annals"), ("annals", "serde_floor")],
    "verify": [("naive_json_check", "annals_verify"), ("annals_replay_raw", "annals_verify")],
}

GROUP_ORDER = [
    "append_one_buffered",
    "append_batch64_buffered",
    "append_sync_interleaved",
    "append_threads_separate",
    "append_threads_one_segment",
    "replay_typed",
    "verify",
    "entry_count",
    "truncate_half",
    "list_sessions",
]


def load(root):
    """{group: {value: {function: (median_ns, throughput)}}}"""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        group = bench["group_id"]
        value = bench.get("value_str") or ""
        func = bench.get("function_id") or ""
        median = est["median"]["point_estimate"]
        out.setdefault(group, {}).setdefault(value, {})[func] = (median, bench.get("throughput"))
    return out


def load_interleaved(root, data):
    """benches/sync.rs writes its medians to append_sync_interleaved.json (not criterion)."""
    path = os.path.join(root, "append_sync_interleaved.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        results = json.load(f)
    group = data.setdefault("append_sync_interleaved", {})
    for r in results:
        group[r["parameter"]] = {
            name: (c["median_ns"], None) for name, c in r["contenders"].items()
        }


def value_key(value):
    """Natural order: 400B before 1-4KiB, 1k < 100k < 1M, 1 < 4 < 8."""
    parts = value.split("/")
    key = []
    for p in parts:
        if p == "400B":
            key.append((0, 0))
            continue
        if p == "1-4KiB":
            key.append((0, 1))
            continue
        if p.startswith("batch"):
            key.append((3, p))
            continue
        m = re.fullmatch(r"(\d+)([kM]?)", p)
        if m:
            n = int(m.group(1)) * {"": 1, "k": 1000, "M": 1000000}[m.group(2)]
            key.append((1, n))
        else:
            key.append((2, p))
    return key


def fmt_time(ns):
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.3g} µs"
    if ns < 1e9:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e9:.3g} s"


def fmt_rate(ns, throughput):
    if not throughput:
        return ""
    if "Bytes" in throughput:
        return f" ({throughput['Bytes'] / ns:.2f} GB/s)"
    return ""


def fmt_ratio(r):
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def functions_of(rows):
    seen = set()
    for cells in rows.values():
        seen.update(cells)
    known = [f for f in FUNCTION_ORDER if f in seen]
    return known + sorted(seen - set(known))


def table(group, rows):
    funcs = functions_of(rows)
    ratios = [(a, b) for a, b in RATIOS.get(group, DEFAULT_RATIOS) if a in funcs and b in funcs]
    head = ["parameter"] + funcs + [f"{a} ÷ {b}" for a, b in ratios]
    lines = [f"### `{group}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for value in sorted(rows, key=value_key):
        cells = rows[value]
        row = [value or "-"]
        for f in funcs:
            if f in cells:
                ns, tp = cells[f]
                row.append(fmt_time(ns) + fmt_rate(ns, tp))
            else:
                row.append("")
        for a, b in ratios:
            if a in cells and b in cells:
                row.append(fmt_ratio(cells[a][0] / cells[b][0]))
            else:
                row.append("")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def median(data, group, value, func):
    cell = data.get(group, {}).get(value, {}).get(func)
    return cell[0] if cell else None


def targets(data):
    """Each target of the issue: (what, where, measured, goal, met)."""
    out = []

    def ratio(group, value, a, b):
        x, y = median(data, group, value, a), median(data, group, value, b)
        return None if x is None or y is None else x / y

    def add(what, where, value, goal, ok):
        if value is not None:
            out.append((what, where, value, goal, ok(value)))

    for v in ["400B", "1-4KiB"]:
        add("buffered append ≥ 5× naive", f"append_one_buffered {v}",
            ratio("append_one_buffered", v, "naive", "annals"), "≥ 5×", lambda r: r >= 5)
    for v in ["400B", "1-4KiB"]:
        add("buffered append within 1.5× of the write(2) floor", f"append_one_buffered {v}",
            ratio("append_one_buffered", v, "annals", "floor"), "≤ 1.5×", lambda r: r <= 1.5)
    for v in ["400B", "1-4KiB"]:
        add("buffered append ≥ 3× SQLite (equal durability)", f"append_one_buffered {v}",
            ratio("append_one_buffered", v, "sqlite", "annals"), "≥ 3×", lambda r: r >= 3)
    for v in sorted(data.get("replay_typed", {}), key=value_key):
        add("replay ≥ 2× naive", f"replay_typed {v}",
            ratio("replay_typed", v, "naive", "annals"), "≥ 2×", lambda r: r >= 2)
    for v in sorted(data.get("verify", {}), key=value_key):
        cell = data["verify"][v].get("annals_verify")
        if cell and cell[1] and "Bytes" in cell[1]:
            add("verify-only ≥ 1 GB/s", f"verify {v}", cell[1]["Bytes"] / cell[0],
                "≥ 1 GB/s", lambda r: r >= 1)
    counts = sorted(data.get("entry_count", {}), key=value_key)
    if len(counts) >= 2:
        lo, hi = counts[0], counts[-1]
        for f in ["annals_uncached", "annals_cached"]:
            a, b = median(data, "entry_count", hi, f), median(data, "entry_count", lo, f)
            if a is not None and b is not None:
                add("entry count flat from smallest to largest segment", f"{f} {hi} ÷ {lo}",
                    a / b, "≤ 1.5×", lambda r: r <= 1.5)
        for f in ["annals_uncached", "annals_cached"]:
            add("entry count ≥ 1000× naive at the largest segment", f"naive ÷ {f} at {hi}",
                ratio("entry_count", hi, "naive", f), "≥ 1000×", lambda r: r >= 1000)
    for v in sorted(data.get("truncate_half", {}), key=value_key):
        add("truncate ≥ 3× naive", f"truncate_half {v}",
            ratio("truncate_half", v, "naive", "annals"), "≥ 3×", lambda r: r >= 3)
    return out


def main():
    if len(sys.argv) > 1:
        root = sys.argv[1]
    elif os.environ.get("CARGO_TARGET_DIR"):
        root = os.path.join(os.environ["CARGO_TARGET_DIR"], "criterion")
    else:
        root = os.path.join("target", "criterion")
    data = load(root)
    load_interleaved(root, data)
    if not data:
        sys.exit(f"no criterion results under {root}")
    groups = [g for g in GROUP_ORDER if g in data] + sorted(set(data) - set(GROUP_ORDER))
    print("<!-- generated by benches/annals-bench/report.py; medians of criterion's estimates -->")
    print()
    for g in groups:
        print(table(g, data[g]))
        print()
    print("### Targets")
    print()
    print("| target | measured on | value | goal | verdict |")
    print("|---|---|---|---|---|")
    for what, where, value, goal, ok in targets(data):
        shown = f"{value:.2f} GB/s" if "GB/s" in goal else fmt_ratio(value)
        print(f"| {what} | {where} | {shown} | {goal} | {'met' if ok else '**missed**'} |")


if __name__ == "__main__":
    main()
