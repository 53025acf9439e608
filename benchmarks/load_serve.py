"""Load on `gidx serve`: many POST /query uploads from concurrent clients, optionally while
`gidx ingest` runs in another process; then checks that every answered query is stored once.

    python benchmarks/load_serve.py INDEX QUERY.bed|QUERY_FOLDER [--requests 2000] [--clients 8]
                                    [--ingest FOLDER] [--k 20] [--max-seconds 600] [--workers 1]

Starts `gidx serve -i INDEX` on a free loopback port (127.0.0.1 only), sends the requests
from threads (http.client, one keep-alive connection per client; the files are read once
and cycled), and stops by itself after --requests or --max-seconds, whichever comes
first. Prints latency p50/p95/p99/max, throughput and errors; stops the server (which
writes its queued stored queries); then verifies with DuckDB that each query id a client
got is in `queries` exactly once with as many `query_results` rows as results returned,
and runs `gidx check`. Exit status 0 when there were no errors and every check passed.

--ingest FOLDER: `gidx ingest FOLDER -i INDEX` starts with the load; the new records
must appear in /records when both are done. The index is modified (stored queries,
ingested records): point it at a copy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def start_server(index: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen, str, int]:
    """`gidx serve` on a free loopback port; returns (process, host, port) once /health answers."""
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "serve", "-i", str(index), "--host", "127.0.0.1",
                             "--port", "0", "-q", *extra], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    port = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gidx serve exited with status {proc.returncode}:\n{log.read_text()}")
        m = re.search(r"gidx serve: http://127\.0\.0\.1:(\d+)/", log.read_text())
        if m:
            port = int(m.group(1))
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return proc, "127.0.0.1", port
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"gidx serve did not answer /health within 120 s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", type=Path)
    ap.add_argument("queries", type=Path, help="a BED file, or a folder of them (cycled)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--rerank", type=int, default=200)
    ap.add_argument("--ingest", type=Path, help="folder to `gidx ingest` in another process during the load")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop sending after this long (default 600)")
    ap.add_argument("--warmup", type=int, default=8, help="requests before the measurement (not counted)")
    ap.add_argument("--workers", type=int, default=1, help="gidx serve --workers (server processes)")
    args = ap.parse_args()
    if args.requests < 1 or args.clients < 1:
        ap.error("--requests and --clients must be at least 1")

    from gidx.bed import is_bed_path

    files = sorted(f for f in args.queries.rglob("*") if f.is_file() and is_bed_path(f)) \
        if args.queries.is_dir() else [args.queries]
    if not files:
        ap.error(f"{args.queries}: no BED files")
    bodies = [multipart(f.name, f.read_bytes()) for f in files]
    work = Path(tempfile.mkdtemp(prefix="gidx-load-"))
    proc, host, port = start_server(args.index, work / "serve.log", ["--workers", str(args.workers)])
    path = f"/query?k={args.k}&rerank={args.rerank}"
    print(f"server: http://{host}:{port}/; {len(files)} query file(s); "
          f"{args.requests} requests from {args.clients} clients", flush=True)

    def post(conn: http.client.HTTPConnection, i: int) -> tuple[int, dict | str]:
        body, ctype = bodies[i % len(bodies)]
        conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data[:200].decode(errors="replace")

    conn = http.client.HTTPConnection(host, port, timeout=120)
    for i in range(args.warmup):
        post(conn, i)
    conn.close()

    ingest = ingest_out = None
    if args.ingest:
        ingest_out = open(work / "ingest.log", "w")
        ingest = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "ingest", str(args.ingest), "-i",
                                   str(args.index), "-q"], stdout=ingest_out, stderr=subprocess.STDOUT)
        ingest_t0 = time.perf_counter()

    lock = threading.Lock()
    counter = iter(range(args.requests))
    latencies: list[float] = []
    server_ms: list[float] = []
    answered: dict[int, int] = {}  # query id -> results returned
    duplicate_ids: list[int] = []
    errors: list[str] = []
    t_end = time.monotonic() + args.max_seconds

    def client() -> None:
        c = http.client.HTTPConnection(host, port, timeout=120)
        while time.monotonic() < t_end:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t = time.perf_counter()
            try:
                status, body = post(c, i)
            except (OSError, http.client.HTTPException) as e:
                c.close()
                c = http.client.HTTPConnection(host, port, timeout=120)
                status, body = -1, f"{type(e).__name__}: {e}"
            dt = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(dt)
                if status != 200 or not isinstance(body, dict):
                    errors.append(f"{status}: {body.get('error') if isinstance(body, dict) else body}")
                    continue
                qid = body.get("query_id")
                server_ms.append(body.get("elapsed_ms") or 0.0)
                if qid is None:
                    errors.append("200 without a query_id")
                elif qid in answered:
                    duplicate_ids.append(qid)
                else:
                    answered[qid] = len(body["results"])
        c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = len(latencies)
    print(f"requests {n} in {wall:.2f} s: {n / wall:.1f} req/s; errors {len(errors)}")
    print(f"latency ms: p50 {pct(latencies, 50):.1f}  p95 {pct(latencies, 95):.1f}  p99 {pct(latencies, 99):.1f}  "
          f"max {max(latencies, default=float('nan')):.1f}  (server-side search p50 {pct(server_ms, 50):.1f})")
    for e, count in sorted({e: errors.count(e) for e in errors}.items(), key=lambda x: -x[1])[:10]:
        print(f"  error x{count}: {e}")
    ok = not errors and not duplicate_ids and n == args.requests

    if ingest is not None:
        remaining = max(60.0, args.max_seconds - (time.perf_counter() - t0))
        try:
            rc = ingest.wait(remaining)
        except subprocess.TimeoutExpired:
            ingest.kill()
            rc = ingest.wait()
        ingest_out.close()
        print(f"ingest: exit {rc} after {time.perf_counter() - ingest_t0:.1f} s")
        ok &= rc == 0
        c = http.client.HTTPConnection(host, port, timeout=60)
        c.request("GET", "/health")
        health = json.loads(c.getresponse().read())
        print(f"records seen by the server after the ingest: {health.get('records')}")

    rc = stop_server(proc)
    print(f"server stopped (exit {rc})")

    import duckdb

    ids = sorted(answered)
    with duckdb.connect(str(args.index / "catalog.duckdb"), read_only=True) as db:
        db.execute("create temp table want as select unnest(?::integer[]) as id, unnest(?::integer[]) as n",
                   [ids, [answered[i] for i in ids]])
        stored = dict(db.execute("select q.id, count(*) from queries q join want using (id) group by q.id").fetchall())
        results = dict(db.execute("select r.query_id, count(*) from query_results r join want w on w.id = r.query_id "
                                  "group by r.query_id").fetchall())
    missing = [i for i in ids if i not in stored]
    twice = [i for i, c in stored.items() if c != 1]
    short = [i for i in ids if results.get(i, 0) != answered[i]]
    print(f"stored queries: {len(ids)} ids answered, {len(stored)} found, missing {len(missing)}, "
          f"stored more than once {len(twice)}, duplicate ids answered {len(duplicate_ids)}, "
          f"result rows differing {len(short)}")
    ok &= not missing and not twice and not short
    chk = subprocess.run([sys.executable, "-m", "gidx.cli.main", "check", "-i", str(args.index)],
                         capture_output=True, text=True, timeout=600)
    print("gidx check:", (chk.stdout.strip().splitlines() or ["(no output)"])[-1], f"(exit {chk.returncode})")
    if chk.returncode:
        print(chk.stdout + chk.stderr)
    ok &= chk.returncode == 0
    print("OK" if ok else f"FAILED (logs in {work})")
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
