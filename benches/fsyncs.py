#!/usr/bin/env python3
"""Counts the fsync-family system calls of annals' append path on the real-shaped session.

Usage: python3 benches/fsyncs.py [RESULTS_DIR]

Builds the `fsyncs` bench target of annals-bench, runs it under
`strace -f -y -e trace=fsync,fdatasync,sync_file_range,syncfs,msync,statx,newfstatat`, and counts,
between each case's two marker calls (a stat of `/annals-fsyncs-mark/begin-CASE` and `…/end-CASE`),
every call of the fsync family, split by what it synced (the segment file, a blob file, a
directory: `-y` prints the path behind each descriptor). Writes `fsyncs.json` to RESULTS_DIR
(default: $CARGO_TARGET_DIR/criterion, else target/criterion), which report.py reads, and prints a
table. Needs strace (Debian: `apt-get install strace`) and Python 3.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

FAMILY = ("fsync", "fdatasync", "sync_file_range", "syncfs", "msync")
CALL = re.compile(r"^(?:\[pid\s+)?(\d+)?\]?\s*(\w+)\((.*)")
MARK = re.compile(r'"/annals-fsyncs-mark/(?:(begin|end)-([\w-]+)|(call))"')
FD_PATH = re.compile(r"^\d+<([^>]*)>")


def build():
    out = subprocess.run(
        ["cargo", "bench", "-p", "annals-bench", "--bench", "fsyncs", "--no-run",
         "--message-format=json"],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "fsyncs" \
                and msg.get("executable"):
            return msg["executable"]
    sys.exit("cargo built no fsyncs executable")


def target_of(args):
    m = FD_PATH.match(args)
    if not m:
        return "other"
    path = m.group(1)
    if path.endswith(".jsonl") or ".jsonl." in path:
        return "segment"
    base = os.path.basename(path)
    if "/blobs" in path and not re.fullmatch(r"[0-9a-f]{2}|blobs", base):
        return "blob"
    return "directory"


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
    exe = build()
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        run = subprocess.run(
            ["strace", "-f", "-y", "-qq", "-o", trace.name, "-e",
             "trace=" + ",".join(FAMILY + ("statx", "newfstatat")), exe, "--bench"],
            check=True, stdout=subprocess.PIPE, text=True)
        lines = trace.read().splitlines()
    calls = {}
    for line in run.stdout.splitlines():
        m = re.match(r"case ([\w-]+): (\d+) append calls", line)
        if m:
            calls[m.group(1)] = int(m.group(2))
    # Per case: the totals by call and target, and per append call (file, directory) syncs.
    cases, per_call, current = {}, {}, None
    for line in lines:
        mark = MARK.search(line)
        if mark:
            if mark.group(3):
                if current:
                    per_call[current].append([0, 0])
            elif mark.group(1) == "begin":
                current = mark.group(2)
                cases[current], per_call[current] = {}, []
            else:
                current = None
            continue
        m = CALL.match(line)
        if not m or current is None or m.group(2) not in FAMILY:
            continue
        target = target_of(m.group(3))
        key = f"{m.group(2)}:{target}"
        cases[current][key] = cases[current].get(key, 0) + 1
        if per_call[current]:
            per_call[current][-1][1 if target == "directory" else 0] += 1
    out = []
    print("| case | append calls | fsync-family calls | file syncs per call (max) | "
          "directory syncs per call (max) | by call and target |")
    print("|---|---|---|---|---|---|")
    for case, counts in cases.items():
        n = calls.get(case, len(per_call[case]))
        total = sum(counts.values())
        files = sum(v for k, v in counts.items() if not k.endswith(":directory"))
        dirs = sum(v for k, v in counts.items() if k.endswith(":directory"))
        max_files = max((c[0] for c in per_call[case]), default=0)
        max_dirs = max((c[1] for c in per_call[case]), default=0)
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        print(f"| {case} | {n} | {total} | {files / max(n, 1):.2f} ({max_files}) | "
              f"{dirs / max(n, 1):.2f} ({max_dirs}) | {kinds} |")
        out.append({"case": case, "append_calls": n, "counts": counts,
                    "file_syncs": files, "directory_syncs": dirs,
                    "max_file_syncs_per_call": max_files,
                    "max_directory_syncs_per_call": max_dirs})
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "fsyncs.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
