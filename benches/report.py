#!/usr/bin/env python3
"""Turns criterion's JSON estimates into the markdown tables of docs/BENCHMARKS.md.

Usage: python3 benches/report.py [CRITERION_DIR] > tables.md

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion, else target/criterion. Every benchmark
found there (`<group>/<function>/<parameter>/new/{benchmark,estimates}.json`) becomes a cell:
the median time per iteration. One table per group, one row per parameter, one column per
contender, then ratio columns. The interleaved harnesses' results sit in the same directory
(`append_sync_interleaved.json` from annals-bench's sync.rs, `compare_append.json` and
`compare_disk.json` from annals-bench-compare, `fsyncs.json` from benches/fsyncs.py) and become
tables of their own. Then the verdict on each target of issues 13 and 18. Standard library only.
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
    "annals_raw",
    "annals_400B_same_bytes",
    "annals_lease",
    "annals_turn_sync",
    "annals_zstd",
    "naive",
    "naive_json_check",
    "naive_rewrite",
    "wc_l",
    "floor",
    "sqlite",
    "sqlite_uncached",
    "sqlite_cached",
    "fjall",
    "redb",
    "okaywal",
    "plain_file",
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
    "verify": [("naive_json_check", "annals_verify"), ("annals_replay_raw", "annals_verify"),
               ("wc_l", "annals_verify")],
    "truncate_half": [("naive", "annals"), ("naive_rewrite", "annals")],
    "append_real_buffered": [("annals", "annals_400B_same_bytes"), ("annals", "naive"),
                             ("annals", "floor")],
    "replay_real": [("annals_raw", "plain_file"), ("annals_typed", "serde_floor")],
}

# The comparison's groups: one column per contender, then the best peer and annals' ratio to it.
COMPARE_GROUPS = ["cmp_replay", "cmp_count"]
COMPARE_ORDER = ["cmp_append_one", "cmp_append_batch64", "cmp_threads8_durable",
                 "cmp_real_session"]
PEERS = ["sqlite", "fjall", "redb", "okaywal", "sled"]
GUARANTEE_RANK = {"nothing": 0, "process_crash": 1, "power_cut": 2}
GUARANTEE_LABEL = {"nothing": "lost on process crash", "process_crash": "survives process crash",
                   "power_cut": "survives power cut"}

GROUP_ORDER = [
    "append_one_buffered",
    "append_real_buffered",
    "append_batch64_buffered",
    "append_sync_interleaved",
    "append_threads_separate",
    "append_threads_one_segment",
    "replay_typed",
    "replay_real",
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


def load_json(root, name):
    path = os.path.join(root, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def is_annals(name):
    return name.startswith("annals")


def best_peer(cells, row_guarantee, base=None):
    """The fastest peer (not annals, not a same-bytes lane) whose guarantee is at least the row's."""
    best = None
    for name, c in cells.items():
        if is_annals(name) or name.endswith("_same_bytes") or name == "serde_floor":
            continue
        if GUARANTEE_RANK.get(c.get("guarantee"), 2) < GUARANTEE_RANK.get(row_guarantee, 0):
            continue
        if best is None or c["median_ns"] < best[1]["median_ns"]:
            best = (name, c)
    return best


def compare_tables(items):
    """Tables of compare_append.json: one per group, one row per item."""
    out = []
    groups = sorted({i["group"] for i in items},
                    key=lambda g: COMPARE_ORDER.index(g) if g in COMPARE_ORDER else 99)
    for g in groups:
        rows = [i for i in items if i["group"] == g]
        names = []
        for r in rows:
            for c in r["contenders"]:
                if c["name"] not in names and not c["name"].endswith("_same_bytes"):
                    names.append(c["name"])
        names.sort(key=lambda n: (not is_annals(n), PEERS.index(n) if n in PEERS else -1))
        head = ["row", "guarantee of the row"] + names + ["best same-guarantee peer",
                                                        "annals ÷ best peer"]
        lines = [f"### `{g}` (interleaved)", "", "| " + " | ".join(head) + " |",
                 "|" + "---|" * len(head)]
        for r in rows:
            cells = {c["name"]: c for c in r["contenders"]}
            annals = cells.get("annals")
            guarantee = annals["guarantee"] if annals else "process_crash"
            row = [f"{r['parameter']} (per {r['unit']})", GUARANTEE_LABEL[guarantee]]
            for n in names:
                c = cells.get(n)
                if not c:
                    row.append("—")
                    continue
                text = fmt_time(c["median_ns"])
                if GUARANTEE_RANK[c["guarantee"]] < GUARANTEE_RANK[guarantee]:
                    text = f"({text}, {GUARANTEE_LABEL[c['guarantee']]})"
                row.append(text)
            best = best_peer(cells, guarantee)
            if best and annals:
                row.append(f"{best[0]} ({fmt_time(best[1]['median_ns'])})")
                row.append(fmt_ratio(annals["median_ns"] / best[1]["median_ns"]))
            else:
                row += ["", ""]
            lines.append("| " + " | ".join(row) + " |")
        same = [(r, c) for r in rows for c in r["contenders"] if c["name"].endswith("_same_bytes")]
        if same:
            lines += ["", "Cost per byte of the real-shaped session ÷ the same bytes as 400-byte "
                      "entries (same run; below 1 means large entries are cheaper per byte):", "",
                      "| row | " + " | ".join(n for n in names if any(
                          c["name"] == f"{n}_400B_same_bytes" for _, c in same)) + " |"]
            shown = [n for n in names if any(c["name"] == f"{n}_400B_same_bytes" for _, c in same)]
            lines.append("|" + "---|" * (len(shown) + 1))
            for r in rows:
                cells = {c["name"]: c for c in r["contenders"]}
                if not any(n.endswith("_same_bytes") for n in cells):
                    continue
                row = [r["parameter"]]
                for n in shown:
                    a, b = cells.get(n), cells.get(f"{n}_400B_same_bytes")
                    row.append(fmt_ratio(a["median_ns"] / b["median_ns"]) if a and b else "")
                lines.append("| " + " | ".join(row) + " |")
        out.append("\n".join(lines))
    return out


def compare_criterion_table(group, rows):
    """cmp_replay / cmp_count: contenders as columns, then the best peer and annals' ratio."""
    funcs = functions_of(rows)
    head = ["parameter"] + funcs + ["best peer", "annals ÷ best peer"]
    lines = [f"### `{group}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for value in sorted(rows, key=value_key):
        cells = rows[value]
        row = [value]
        for f in funcs:
            row.append(fmt_time(cells[f][0]) + fmt_rate(*cells[f]) if f in cells else "—")
        peers = [(f, c[0]) for f, c in cells.items() if f in PEERS]
        if peers and "annals" in cells:
            name, ns = min(peers, key=lambda p: p[1])
            row += [f"{name} ({fmt_time(ns)})", fmt_ratio(cells["annals"][0] / ns)]
        else:
            row += ["", ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def disk_table(disk):
    names = []
    for by in disk.values():
        for n in by:
            if n not in names:
                names.append(n)
    names.sort(key=lambda n: (not is_annals(n), PEERS.index(n) if n in PEERS else -1))
    head = ["fixture", "payload B/entry"] + names + ["best peer", "annals ÷ best peer"]
    lines = ["### `cmp_disk` (bytes allocated on disk per entry, `st_blocks` × 512)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fixture, by in disk.items():
        any_c = next(iter(by.values()))
        row = [fixture, f"{any_c['payload_bytes'] / any_c['entries']:.0f}"]
        per = {n: c["allocated_bytes"] / c["entries"] for n, c in by.items()}
        row += [f"{per[n]:.0f}" if n in per else "—" for n in names]
        peers = [(n, v) for n, v in per.items() if n in PEERS]
        if peers and "annals" in per:
            n, v = min(peers, key=lambda p: p[1])
            row += [f"{n} ({v:.0f})", fmt_ratio(per["annals"] / v)]
        else:
            row += ["", ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def fsync_table(cases):
    lines = ["### `fsyncs` (strace, append path of the real-shaped session)", "",
             "| case | append calls | fsync-family calls | file syncs per call: mean (max) | "
             "directory syncs per call: mean (max) | by call and target |",
             "|---|---|---|---|---|---|"]
    for c in cases:
        n = c["append_calls"] or 1
        kinds = ", ".join(f"`{k}` {v}" for k, v in sorted(c["counts"].items())) or "none"
        lines.append(f"| {c['case']} | {c['append_calls']} | {sum(c['counts'].values())} | "
                     f"{c['file_syncs'] / n:.2f} ({c['max_file_syncs_per_call']}) | "
                     f"{c['directory_syncs'] / n:.2f} ({c['max_directory_syncs_per_call']}) | "
                     f"{kinds} |")
    return "\n".join(lines)


def peer_targets(items, data, disk):
    """Issue 18: every row of both peer tables ≤ 1.0× the best same-guarantee peer."""
    out = []
    for r in items or []:
        cells = {c["name"]: c for c in r["contenders"]}
        annals = cells.get("annals")
        if not annals:
            continue
        best = best_peer(cells, annals["guarantee"])
        if best:
            v = annals["median_ns"] / best[1]["median_ns"]
            out.append(("peer table: annals ≤ 1.0× the best same-guarantee peer",
                        f"{r['group']} {r['parameter']} (vs {best[0]})", v, "≤ 1.0×", v <= 1.0))
    for g in COMPARE_GROUPS:
        for value, cells in data.get(g, {}).items():
            peers = [(f, c[0]) for f, c in cells.items() if f in PEERS]
            if peers and "annals" in cells:
                name, ns = min(peers, key=lambda p: p[1])
                v = cells["annals"][0] / ns
                out.append(("peer table: annals ≤ 1.0× the best same-guarantee peer",
                            f"{g} {value} (vs {name})", v, "≤ 1.0×", v <= 1.0))
    for fixture, by in (disk or {}).items():
        per = {n: c["allocated_bytes"] / c["entries"] for n, c in by.items()}
        peers = [(n, v) for n, v in per.items() if n in PEERS]
        if peers and "annals" in per:
            n, v = min(peers, key=lambda p: p[1])
            out.append(("peer table: annals ≤ 1.0× the best same-guarantee peer",
                        f"bytes on disk {fixture} (vs {n})", per["annals"] / v, "≤ 1.0×",
                        per["annals"] / v <= 1.0))
    return out


def real_targets(items, fsyncs, data):
    out = []
    for r in items or []:
        if r["group"] != "cmp_real_session" or not r["parameter"].endswith("/buffered"):
            continue
        cells = {c["name"]: c for c in r["contenders"]}
        a, b = cells.get("annals"), cells.get("annals_400B_same_bytes")
        if a and b:
            v = a["median_ns"] / b["median_ns"]
            out.append(("real-shaped Buffered: cost per byte ≤ 1.0× the same bytes as 400 B entries",
                        f"{r['group']} {r['parameter']}", v, "≤ 1.0×", v <= 1.0))
    for c in fsyncs or []:
        n = c["append_calls"] or 1
        total = sum(c["counts"].values())
        if c["case"].startswith("buffered"):
            out.append(("real-shaped Buffered: zero fsync-family calls on the append path",
                        f"fsyncs {c['case']}", total, "0", total == 0))
        else:
            files, dirs = c["max_file_syncs_per_call"], c["max_directory_syncs_per_call"]
            out.append(("real-shaped Sync: ≤ 2 fdatasync + 1 directory sync per append call",
                        f"fsyncs {c['case']} (most file syncs in one call)", files, "≤ 2",
                        files <= 2))
            out.append(("real-shaped Sync: ≤ 2 fdatasync + 1 directory sync per append call",
                        f"fsyncs {c['case']} (most directory syncs in one call)", dirs, "≤ 1",
                        dirs <= 1))
    for value, cells in data.get("replay_real", {}).items():
        if "annals_raw" in cells and "plain_file" in cells:
            v = cells["annals_raw"][0] / cells["plain_file"][0]
            out.append(("real-shaped replay, blobs re-inflated ≤ 1.2× reading the same bytes as one file",
                        f"replay_real {value}", v, "≤ 1.2×", v <= 1.2))
    return out


def issue13_targets(data, items):
    """Issue 13's table, where the suite measures it."""
    out = []

    def ratio(group, value, a, b):
        x, y = median(data, group, value, a), median(data, group, value, b)
        return None if x is None or y is None else x / y

    def add(what, where, value, goal, ok):
        if value is not None:
            out.append((what, where, value, goal, ok(value)))

    add("issue 13: buffered append, default per-append lock, 400 B ≤ 2.3× the floor",
        "append_one_buffered 400B", ratio("append_one_buffered", "400B", "annals", "floor"),
        "≤ 2.3×", lambda r: r <= 2.3)
    add("issue 13: typed append, 400 B, per-append lock ≤ 2.5× the floor",
        "append_one_buffered 400B", ratio("append_one_buffered", "400B", "annals_typed", "floor"),
        "≤ 2.5×", lambda r: r <= 2.5)
    for v in sorted(data.get("replay_typed", {}), key=value_key):
        add("issue 13: typed replay ≤ 1.25× serde_floor", f"replay_typed {v}",
            ratio("replay_typed", v, "annals", "serde_floor"), "≤ 1.25×", lambda r: r <= 1.25)
        add("issue 13: typed replay faster than the naive store", f"replay_typed {v}",
            ratio("replay_typed", v, "annals", "naive"), "< 1.0×", lambda r: r < 1.0)
    for v in sorted(data.get("verify", {}), key=value_key):
        cell = data["verify"][v].get("annals_verify")
        if cell and cell[1] and "Bytes" in cell[1]:
            goal = 3 if v.startswith("400B") else 4
            add("issue 13: verify ≥ 4 GB/s (1–4 KiB), ≥ 3 GB/s (400 B)", f"verify {v}",
                cell[1]["Bytes"] / cell[0], f"≥ {goal} GB/s", lambda r, g=goal: r >= g)
    for v in sorted(data.get("verify", {}), key=value_key):
        add("issue 13: verify ≥ 0.6× wc -l on the same file (time of wc ÷ time of verify)",
            f"verify {v}", ratio("verify", v, "wc_l", "annals_verify"), "≥ 0.6×",
            lambda r: r >= 0.6)
    for v in sorted(data.get("truncate_half", {}), key=value_key):
        add("issue 13: truncate to half faster than a naive rewrite (copy, fsync, rename)",
            f"truncate_half {v}", ratio("truncate_half", v, "annals", "naive_rewrite"), "< 1.0×",
            lambda r: r < 1.0)
    add("issue 13: sync after a 20-entry buffered turn ≤ 1.2× one write + fdatasync",
        "append_sync_interleaved turn20_sync/400B",
        ratio("append_sync_interleaved", "turn20_sync/400B", "annals", "floor"), "≤ 1.2×",
        lambda r: r <= 1.2)
    add("issue 13: create a session with its first entry ≤ 1.1× a naive durable create",
        "append_sync_interleaved create_session/400B",
        ratio("append_sync_interleaved", "create_session/400B", "annals", "naive"), "≤ 1.1×",
        lambda r: r <= 1.1)
    one = {i["parameter"]: i for i in items or [] if i["group"] == "cmp_append_one"}
    thr = {i["parameter"]: i for i in items or [] if i["group"] == "cmp_threads8_durable"}

    def annals_ns(item):
        return next((c["median_ns"] for c in item["contenders"] if c["name"] == "annals"), None)

    single = one.get("400B/durable")
    if single and "400B/1_session" in thr:
        t1, t8 = annals_ns(single), annals_ns(thr["400B/1_session"])
        if t1 and t8:
            add("issue 13: durable appends, 8 threads, one segment ≥ 5× the throughput of 1 thread",
                "cmp_threads8_durable 400B/1_session ÷ cmp_append_one 400B/durable", t1 / t8,
                "≥ 5×", lambda r: r >= 5)
    if single and "400B/8_sessions" in thr:
        t1, t8 = annals_ns(single), annals_ns(thr["400B/8_sessions"])
        if t1 and t8:
            add("issue 13: durable appends, 8 threads, 8 segments (report vs 8 × one fdatasync)",
                "throughput ÷ 1 thread's", t1 / t8, "report", lambda r: True)
    return out


def main():
    if len(sys.argv) > 1:
        root = sys.argv[1]
    elif os.environ.get("CARGO_TARGET_DIR"):
        root = os.path.join(os.environ["CARGO_TARGET_DIR"], "criterion")
    else:
        root = os.path.join("target", "criterion")
    data = load(root) if os.path.isdir(root) else {}
    load_interleaved(root, data)
    items = load_json(root, "compare_append.json")
    disk = load_json(root, "compare_disk.json")
    fsyncs = load_json(root, "fsyncs.json")
    if not data and not items:
        sys.exit(f"no results under {root}")
    own = {g: v for g, v in data.items() if not g.startswith("cmp_")}
    groups = [g for g in GROUP_ORDER if g in own] + sorted(set(own) - set(GROUP_ORDER))
    print("<!-- generated by benches/report.py; medians of criterion's estimates and of the "
          "interleaved harnesses -->")
    print()
    for g in groups:
        print(table(g, data[g]))
        print()
    if items or any(g in data for g in COMPARE_GROUPS) or disk:
        print("### Against the peers (tables)")
        print()
        for t in compare_tables(items or []):
            print(t)
            print()
        for g in COMPARE_GROUPS:
            if g in data:
                print(compare_criterion_table(g, data[g]))
                print()
        if disk:
            print(disk_table(disk))
            print()
    if fsyncs:
        print(fsync_table(fsyncs))
        print()
    print("### Targets")
    print()
    print("| target | measured on | value | goal | verdict |")
    print("|---|---|---|---|---|")
    rows = (targets(data) + issue13_targets(data, items) + real_targets(items, fsyncs, data)
            + peer_targets(items, data, disk))
    for what, where, value, goal, ok in rows:
        if "GB/s" in goal:
            shown = f"{value:.2f} GB/s"
        elif goal in ("0", "≤ 2", "≤ 1"):
            shown = f"{value:g}" if isinstance(value, int) else f"{value:.2f}"
        else:
            shown = fmt_ratio(value)
        verdict = "—" if goal == "report" else ("met" if ok else "**missed**")
        print(f"| {what} | {where} | {shown} | {goal} | {verdict} |")


if __name__ == "__main__":
    main()
