#!/usr/bin/env python3
"""Prints agent-like JSON lines whose sizes follow the real-log distribution of issue 18
(p50 650 B, p90 2.9 KiB, p99 29 KiB, max 178 KiB; 7.4 % over 4 KiB), for `annals append`.

    real_shaped.py SEED BYTES        # about BYTES of compact JSON, deterministic for SEED

Used by bench/grep.sh to build a large store; the project's own code, no dependency.
"""
import json
import random
import sys

WORDS = (
    "the pool is created inside the request handler so every request pays for a new TLS "
    "handshake locally the test passes because the fixture database is warm on CI it starts "
    "cold and the timeout is too short I moved the construction into main and pass it down "
    "through the application state all tests pass including the two that were flaky before "
    "retry budget jitter backoff latency ranking candidate summary migration index session "
    "user created concurrently production staging deploy rollback config"
).split()
CODE = [
    "let pool = Pool::builder().max_size(16).build(manager)?;",
    "async fn handle(req: Request, state: State<App>) -> Result<Response> {",
    "    tracing::info!(request_id = %req.id, latency_ms = elapsed, \"done\");",
    "def plan(self, goal: str, tools: list[Tool]) -> list[Step]:",
    "CREATE INDEX CONCURRENTLY idx_sessions_user_created ON sessions (user_id, created_at);",
    "test login::rejects_expired_token ... ok",
    "\x1b[32m✓\x1b[0m 214 passed, 0 failed — durée 3,2 s",
]
# (cumulative probability, low, high) of entry sizes, log-uniform within each band.
BANDS = [(0.50, 120, 650), (0.90, 650, 2970), (0.926, 2970, 4096), (0.99, 4096, 29700), (1.0, 29700, 182000)]


def size(rng):
    u = rng.random()
    lo_p = 0.0
    for p, lo, hi in BANDS:
        if u <= p:
            t = (u - lo_p) / (p - lo_p)
            return int(lo * (hi / lo) ** t)
        lo_p = p
    return 650


def text(rng, n, code=False):
    out = []
    total = 0
    while total < n:
        piece = rng.choice(CODE) + "\n" if code else rng.choice(WORDS) + " "
        out.append(piece)
        total += len(piece)
    return "".join(out)[:n]


def entry(rng, i, n):
    kind = rng.random()
    if kind < 0.25:
        e = {"type": "user", "ts": 1796119200000 + i, "text": ""}
        field = "text"
    elif kind < 0.55:
        e = {"type": "assistant", "ts": 1796119200000 + i, "model": "demo-large-2", "text": "",
             "usage": {"input_tokens": rng.randrange(800, 30000), "output_tokens": rng.randrange(10, 900)}}
        field = "text"
    elif kind < 0.75:
        e = {"type": "tool_call", "ts": 1796119200000 + i, "id": "call_%016x" % rng.getrandbits(64),
             "name": rng.choice(["read_file", "run_command", "search"]), "args": {"path": "src/db/pool.rs"}, "note": ""}
        field = "note"
    else:
        e = {"type": "tool_result", "ts": 1796119200000 + i, "call_id": "call_%016x" % rng.getrandbits(64),
             "ok": rng.random() > 0.1, "output": ""}
        field = "output"
    # A rare token to search for: about one entry in 10,000.
    if rng.random() < 0.0001:
        e["marker"] = "NEEDLE-%d" % i
    base = len(json.dumps(e, ensure_ascii=False, separators=(",", ":")))
    e[field] = text(rng, max(0, n - base), code=field == "output")
    return e


def main():
    seed, budget = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    written = 0
    i = 0
    out = sys.stdout
    while written < budget:
        line = json.dumps(entry(rng, i, size(rng)), ensure_ascii=False, separators=(",", ":"))
        out.write(line + "\n")
        written += len(line.encode()) + 1
        i += 1


if __name__ == "__main__":
    main()
