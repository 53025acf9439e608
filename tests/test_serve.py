"""``gidx serve``: the real server as a subprocess on a loopback port, spoken to over HTTP.

One server per module on a private copy of the yeast index (``yeast_served``), plus one
with a token and a small upload limit (``tokened``)."""

from __future__ import annotations

import gzip
import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

import gidx
from conftest import YEAST_BEDS, _copy, bed_files, count_data_lines, record_name

SSA4 = YEAST_BEDS / "winston_annotations" / "SSA4.bed"
TRANSCRIPTS = YEAST_BEDS / "winston_annotations" / "Scer_transcripts_w_verifiedORFs-nonoverlapping.bed.gz"
PEAKS = YEAST_BEDS / "macs3_hmmratac" / "hmmratac_yeast500k_poisson_accessible_regions.narrowPeak"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def tokened(yeast_index, tmp_path_factory, serve_index):
    """A server that wants ``Authorization: Bearer s3cret-token`` and takes bodies of at most 4 KiB."""
    return serve_index(_copy(yeast_index, tmp_path_factory.mktemp("tokened") / "idx"), "--max-upload", "4K",
                       token=TOKEN)


def catalog_counts(index: Path) -> dict[str, int]:
    with duckdb.connect(str(index / "catalog.duckdb"), read_only=True) as c:
        tables = [r[0] for r in c.execute("select table_name from information_schema.tables "
                                          "where table_schema = 'main' order by 1").fetchall()]
        return {t: c.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}


def n_records(index: Path) -> int:
    with duckdb.connect(str(index / "catalog.duckdb"), read_only=True) as c:
        return c.execute("select count(*) from records").fetchone()[0]


def in_process(index: Path, path: Path, **kw) -> list[dict]:
    """What Index.query answers in this process (not stored)."""
    return gidx.Index.open(index).query(path, save=False, **kw).to_pylist()


def claim_length(server, path: str, n: int, token: str | None = None) -> tuple[int, str]:
    """Send only the headers of a POST that announces an n-byte body; the answer comes before any body."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(n))
        if token:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def same_ranking(api: list[dict], local: list[dict]) -> None:
    assert [r["record"] for r in api] == [r["record"] for r in local]
    assert [r["rank"] for r in api] == [r["rank"] for r in local]
    assert [r["n_intervals"] for r in api] == [r["n_intervals"] for r in local]
    for a, b in zip(api, local):
        assert a["record_id"] == b["record_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-9)
        if b["exact_score"] is None:
            assert a["exact_score"] is None
        else:
            assert a["exact_score"] == pytest.approx(b["exact_score"], abs=1e-12)


# ---- happy paths -----------------------------------------------------------------------


def test_health(yeast_served):
    status, body, _ = yeast_served.get("/health")
    assert status == 200
    assert body["ok"] is True
    assert body["records"] == n_records(yeast_served.index) >= len(bed_files(YEAST_BEDS))
    assert Path(body["index"]) == yeast_served.index.resolve()
    assert body["version"] == gidx.__version__


@pytest.mark.parametrize("path,params,kw", [
    (TRANSCRIPTS, "k=10", dict(k=10)),
    (PEAKS, "k=5&rerank=8", dict(k=5, rerank=8)),
    (SSA4, "k=7&no_rerank=true", dict(k=7, rerank=None)),
    (PEAKS, "k=4&exact=true", dict(k=4, exact=True)),
])
def test_query_upload_equals_index_query(yeast_served, path, params, kw):
    status, body, _ = yeast_served.post_file(f"/query?{params}", path.name, path.read_bytes())
    assert status == 200, body
    assert body["mode"] == ("exact" if kw.get("exact") else "vector" if "rerank" in kw and kw["rerank"] is None
                            else "rerank")
    assert isinstance(body["query_id"], int) and body["elapsed_ms"] > 0 and body["warnings"] == []
    assert len(body["results"]) == kw["k"]
    same_ranking(body["results"], in_process(yeast_served.index, path, **kw))
    if path == TRANSCRIPTS:  # the file is in the index: itself first, S = 1
        assert body["results"][0]["record"] == record_name(TRANSCRIPTS, YEAST_BEDS)
        assert body["results"][0]["exact_score"] == pytest.approx(1.0)


def test_query_json_intervals_and_bed_text(yeast_served, tmp_path):
    text = gzip.decompress(TRANSCRIPTS.read_bytes()).decode()
    rows = [line.split("\t")[:3] for line in text.splitlines() if line and not line.startswith(("#", "track"))]
    intervals = [[c, int(s), int(e)] for c, s, e in rows]
    plain = tmp_path / "q.bed"
    plain.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in intervals))
    local = in_process(yeast_served.index, plain, k=6)
    for payload in ({"intervals": intervals, "k": 6}, {"bed": plain.read_text(), "k": "6", "name": "from json"}):
        status, body, _ = yeast_served.post_json("/query", payload)
        assert status == 200, body
        same_ranking(body["results"], local)
    # the stored query carries the name given (else the file name, here query.bed)
    status, stored, _ = yeast_served.get(f"/queries/{body['query_id']}")
    assert status == 200 and stored["query"]["name"] == "from json"


def test_stored_query(yeast_served):
    status, body, _ = yeast_served.post_file("/query?k=5", "my peaks.narrowPeak", PEAKS.read_bytes())
    assert status == 200, body
    qid = body["query_id"]
    status, stored, _ = yeast_served.get(f"/queries/{qid}")
    assert status == 200, stored
    q = stored["query"]
    assert q["id"] == qid and q["name"] == "my peaks.narrowPeak" and q["k"] == 5 and q["mode"] == "rerank"
    assert q["n_intervals"] == count_data_lines(PEAKS)
    assert [(r["rank"], r["record"], r["record_id"], r["n_intervals"]) for r in stored["results"]] == \
        [(r["rank"], r["record"], r["record_id"], r["n_intervals"]) for r in body["results"]]
    for a, b in zip(stored["results"], body["results"]):
        assert a["score"] == pytest.approx(b["score"]) and a["exact_score"] == pytest.approx(b["exact_score"])


def test_records_paged_and_one(yeast_served):
    total = n_records(yeast_served.index)
    status, first, _ = yeast_served.get("/records?limit=5")
    assert status == 200 and first["total"] == total and first["offset"] == 0 and len(first["records"]) == 5
    names, offset = [], 0
    while offset < total:
        status, page, _ = yeast_served.get(f"/records?offset={offset}&limit=4")
        assert status == 200 and page["total"] == total
        names += [r["name"] for r in page["records"]]
        offset += 4
    with duckdb.connect(str(yeast_served.index / "catalog.duckdb"), read_only=True) as c:
        want = [r[0] for r in c.execute("select name from records order by id").fetchall()]
    assert names == want
    name = record_name(SSA4, YEAST_BEDS)  # contains a '/'
    status, row, _ = yeast_served.get(f"/records/{name}")
    assert status == 200, row
    assert row["name"] == name and row["n_intervals"] == 1 and row["source_path"].endswith("SSA4.bed")
    assert row["extra"]["columns"] == 6  # the JSON column arrives parsed
    assert yeast_served.get("/records?limit=0")[0] == 400
    assert yeast_served.get("/records?offset=-1")[0] == 400


def test_sql_read(yeast_served):
    status, body, _ = yeast_served.post_json(
        "/sql", {"sql": "select name, n_intervals from records where name like '%SSA4' order by name"})
    assert status == 200, body
    assert body["columns"] == ["name", "n_intervals"] and body["rows"] == [[record_name(SSA4, YEAST_BEDS), 1]]
    assert body["truncated"] is False
    status, body, _ = yeast_served.post_json("/sql", {"sql": "describe records"})
    assert status == 200 and "name" in [r[0] for r in body["rows"]]
    status, body, _ = yeast_served.post_json("/sql", {"sql": "select * from range(20000)"})
    assert status == 200 and body["row_count"] == 10_000 and body["truncated"] is True
    status, body, _ = yeast_served.post_json("/sql", {"sql": "selec 1"})
    assert status == 400 and "syntax error" in body["error"].lower()


def test_concurrent_requests(yeast_served):
    """Queries from 6 threads, with SQL and record listings in between: all answered, ids distinct."""
    files = [SSA4, PEAKS, TRANSCRIPTS]
    got, errors = [], []

    def client(i: int) -> None:
        for j in range(3):
            f = files[(i + j) % len(files)]
            status, body, _ = yeast_served.post_file("/query?k=5", f.name, f.read_bytes())
            (got if status == 200 else errors).append(body)
            for path in ("/records?limit=3", "/health"):
                status, body, _ = yeast_served.get(path)
                if status != 200:
                    errors.append(body)
            status, body, _ = yeast_served.post_json("/sql", {"sql": "select count(*) from queries"})
            if status != 200:
                errors.append(body)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    ids = [b["query_id"] for b in got]
    assert len(ids) == 18 and len(set(ids)) == 18
    # every one stored once
    rows = dict(yeast_served.sql(f"select id, count(*) from queries where id in ({','.join(map(str, ids))}) group by id"))
    assert sorted(map(int, rows)) == sorted(ids) and set(rows.values()) == {1}


# ---- errors ----------------------------------------------------------------------------


def test_malformed_upload_is_400_with_file_line(yeast_served):
    status, body, _ = yeast_served.post_file("/query", "peaks.bed", b"chrI\t100\t200\nchrI\t300\tx\n")
    assert status == 400
    assert body["error"].startswith("peaks.bed:2: ") and "\n" not in body["error"]
    assert "gidx-serve-" not in str(body) and "/tmp" not in str(body)
    status, body, _ = yeast_served.post_file("/query", "../../etc/peaks.bed", b"chrNope\t1\t5\n")
    assert status == 400 and body["error"].startswith("peaks.bed:1: "), body
    status, body, _ = yeast_served.post_json("/query", {"bed": "chrI\t5\t1\n", "filename": "mine.bed"})
    assert status == 400 and body["error"].startswith("mine.bed:1: "), body
    status, body, _ = yeast_served.post_json("/query", {"intervals": [["chrI", 1, 10], ["chrI", "a", 3]]})
    assert status == 400 and body["error"].startswith("intervals[1]: "), body
    status, body, _ = yeast_served.post_json("/query", {"intervals": [["chrI", 50, 10]]})
    assert status == 400 and body["error"].startswith("query.bed:1: "), body


@pytest.mark.parametrize("params,fragment", [
    ("k=0", "k"), ("k=abc", "k"), ("rerank=0", "rerank"), ("exact=true&no_rerank=true", "contradict"),
])
def test_bad_parameters_are_400(yeast_served, params, fragment):
    status, body, _ = yeast_served.post_file(f"/query?{params}", "q.bed", SSA4.read_bytes())
    assert status == 400 and fragment in body["error"], body


def test_bad_bodies_are_400_or_415(yeast_served):
    assert yeast_served.request("POST", "/query", b"{nope", {"Content-Type": "application/json"})[0] == 400
    assert yeast_served.post_json("/query", {"something": 1})[0] == 400
    assert yeast_served.post_file("/query", "q.bed", SSA4.read_bytes(), field="upload")[0] == 400
    assert yeast_served.request("POST", "/query", b"chrI\t1\t2\n", {"Content-Type": "text/plain"})[0] == 415
    assert yeast_served.post_json("/sql", {"query": "select 1"})[0] == 400


def test_not_found(yeast_served):
    for path in ("/records/no_such_record", "/records/winston_annotations/nope", "/queries/999999",
                 "/queries/abc", "/no/such/route"):
        status, body, _ = yeast_served.get(path)
        assert status == 404, (path, body)
        assert isinstance(body, dict) and body["error"]


WRITES = [
    "insert into settings values ('x', 'y')",
    "update records set name = 'x'",
    "delete from records",
    "create table t (a integer)",
    "create temp table t as select 1",
    "drop table records",
    "alter table records add column x integer",
    "attach 'other.duckdb' as other",
    "detach catalog",
    "install httpfs",
    "load httpfs",
    "set threads = 1",
    "reset threads",
    "pragma database_list",
    "checkpoint",
    "vacuum",
    "begin transaction",
    "select 1; drop table records",
    "select nextval('query_id_seq')",
    "call pragma_version()",
]


@pytest.mark.parametrize("statement", WRITES)
def test_sql_that_would_write_is_403(yeast_served, statement):
    status, body, _ = yeast_served.post_json("/sql", {"sql": statement})
    assert status == 403, body
    assert body["error"]


def test_sql_cannot_touch_server_files(yeast_served, tmp_path):
    out = tmp_path / "out.csv"
    for statement in (f"copy records to '{out}'", f"copy (select 1) to '{out}' (format csv)",
                      f"export database '{tmp_path / 'exp'}'", f"explain analyze copy records to '{out}'",
                      "select * from read_csv('/etc/passwd')", "select * from read_text('/etc/hostname')",
                      "select * from read_blob('/etc/passwd')", "select * from glob('/etc/*')",
                      "select * from read_parquet('/etc/passwd')", f"attach '{tmp_path / 'x.duckdb'}'"):
        status, body, _ = yeast_served.post_json("/sql", {"sql": statement})
        assert status == 403, (statement, body)
    status, body, _ = yeast_served.post_json("/sql", {"sql": "select * from '/etc/passwd'"})
    assert status in (400, 403) and "root:" not in str(body)
    assert list(tmp_path.iterdir()) == []


def test_catalog_unchanged_by_anything_but_query(yeast_served, tmp_path):
    s = yeast_served
    s.sql("select 1")  # the server writes its queued stored queries before SQL
    before = catalog_counts(s.index)
    files_before = sorted(p.name for p in s.index.iterdir())
    for statement in WRITES + [f"copy records to '{tmp_path / 'x.csv'}'", "select * from read_csv('/etc/passwd')"]:
        assert s.post_json("/sql", {"sql": statement})[0] in (400, 403)
    assert s.post_file("/query", "bad.bed", b"chrI\t1\tx\n")[0] == 400
    assert s.post_file("/query?k=0", "q.bed", SSA4.read_bytes())[0] == 400
    assert s.post_json("/query", {"intervals": [["chrI", 5, 1]]})[0] == 400
    assert claim_length(s, "/query", 60 * 1024 * 1024)[0] == 413
    for path in ("/records/nope", "/queries/123456", "/queries/-1"):
        assert s.get(path)[0] == 404
    assert s.request("DELETE", "/records/winston_annotations/SSA4")[0] == 405
    assert s.request("PUT", "/records")[0] == 405
    assert s.request("POST", "/records")[0] == 405
    assert s.get("/health", headers={"Host": "attacker.example"})[0] == 403
    for path in ("/records?limit=1000", "/health", "/queries/1", "/records/winston_annotations/SSA4"):
        assert s.get(path)[0] in (200, 404)
    assert s.post_json("/sql", {"sql": "select count(*) from intervals"})[0] == 200
    assert catalog_counts(s.index) == before
    assert sorted(p.name for p in s.index.iterdir()) == files_before
    # ... and a query is the one thing that is stored
    assert s.post_file("/query?k=3", "q.bed", SSA4.read_bytes())[0] == 200
    s.sql("select 1")
    after = catalog_counts(s.index)
    assert after["queries"] == before["queries"] + 1 and after["query_results"] == before["query_results"] + 3
    assert {t: n for t, n in after.items() if t not in ("queries", "query_results")} == \
        {t: n for t, n in before.items() if t not in ("queries", "query_results")}


def test_dns_rebinding_guard(yeast_served):
    """Without a token only loopback Host names are answered (a page on another site that
    resolves its name to 127.0.0.1 cannot read the index)."""
    assert yeast_served.get("/health", headers={"Host": "evil.example:80"})[0] == 403
    for host in ("localhost", f"127.0.0.1:{yeast_served.port}", f"localhost:{yeast_served.port}"):
        assert yeast_served.get("/health", headers={"Host": host})[0] == 200


# ---- token and upload limit ----------------------------------------------------------------


def test_token_required(tokened):
    for path in ("/health", "/records", "/records/winston_annotations/SSA4", "/queries/1"):
        status, body, headers = tokened.get(path, token=None)
        assert status == 401 and "token" in body["error"], (path, body)
        assert headers.get("www-authenticate") == "Bearer"
        assert tokened.get(path, token="wrong")[0] == 401
        assert tokened.get(path, token=None, headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
    assert tokened.post_json("/sql", {"sql": "select 1"}, token=None)[0] == 401
    assert tokened.post_file("/query", "q.bed", SSA4.read_bytes(), token="nope")[0] == 401
    # a too-big body without the token: refused for the token, before the body is looked at
    assert claim_length(tokened, "/query", 10**9)[0] == 401
    status, body, _ = tokened.get("/health")
    assert status == 200 and body["ok"]
    status, body, _ = tokened.post_file("/query?k=3", "q.bed", SSA4.read_bytes())
    assert status == 200 and len(body["results"]) == 3
    assert tokened.get(f"/queries/{body['query_id']}")[0] == 200
    # the page (which asks for the token) and the API description hold no data: public
    for path in ("/", "/static/app.js", "/docs", "/openapi.json"):
        assert tokened.get(path, token=None)[0] == 200, path
    # with a token, other Host names are fine (the token is the guard)
    assert tokened.get("/health", headers={"Host": "gidx.example"})[0] == 200


def test_upload_limit_413(tokened):
    big = b"chrI\t100\t200\n" * 2000  # 26 kB > 4 KiB
    status, body, _ = tokened.post_file("/query", "big.bed", big)
    assert status == 413 and "4,096 bytes" in body["error"]
    assert claim_length(tokened, "/query", 4097, token=TOKEN)[0] == 413
    assert tokened.post_json("/sql", {"sql": "select 1 -- " + "x" * 5000})[0] == 413

    # no Content-Length (chunked): counted while reading, refused once past the limit
    def chunks():
        for _ in range(16):
            yield b"x" * 4096

    conn = http.client.HTTPConnection(tokened.host, tokened.port, timeout=30)
    try:
        conn.request("POST", "/query", body=chunks(), encode_chunked=True,
                     headers={"Content-Type": "multipart/form-data; boundary=x", "Authorization": f"Bearer {TOKEN}"})
        r = conn.getresponse()
        assert r.status == 413, r.read()
    finally:
        conn.close()
    # under the limit: fine
    assert tokened.post_file("/query?k=2", "small.bed", SSA4.read_bytes())[0] == 200


# ---- the command line ----------------------------------------------------------------------


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("GIDX_INDEX", "GIDX_TOKEN")}
    return subprocess.run([sys.executable, "-m", "gidx.cli.main", "serve", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_host_without_token_refused(yeast_index, host):
    p = _serve_cli("-i", str(yeast_index), "--host", host, "--port", "0")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: --host {host} is not a loopback address"), p.stderr


def test_bad_options_refused(yeast_index, tmp_path):
    p = _serve_cli("-i", str(yeast_index), "--max-upload", "lots")
    assert p.returncode == 2 and p.stderr.startswith("Error: --max-upload 'lots'"), p.stderr
    p = _serve_cli("-i", str(tmp_path / "nothing"), "--port", "0")
    assert p.returncode == 2 and p.stderr.startswith("Error: ") and "no gidx index" in p.stderr, p.stderr


def test_cli_does_not_import_the_web_stack(yeast_served):
    probe = ("import sys\nfrom gidx.cli.main import main\nsys.argv = {argv!r}\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('WEB', sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'python_multipart') "
             "if m in sys.modules))\n")
    for argv in (["gidx", "--help"], ["gidx", "query", str(SSA4), "-i", str(yeast_served.index), "-k", "2", "-q"],
                 ["gidx", "serve", "--help"]):
        p = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True, text=True, timeout=120)
        assert "WEB []" in p.stdout, (argv, p.stdout[-2000:], p.stderr[-2000:])


# ---- other processes and shutdown ------------------------------------------------------------


def test_ingest_by_another_process_shows_up(yeast_served, tmp_path):
    s = yeast_served
    src = gzip.decompress((YEAST_BEDS / "winston_annotations" / "Scer_polIItranscripts-adjustedTSS.bed.gz")
                          .read_bytes()).decode().splitlines()
    fresh = tmp_path / "fresh_tss.bed"
    fresh.write_text("".join(f"{f[0]}\t{int(f[1]) + 7}\t{int(f[2]) + 7}\n"
                             for f in (line.split("\t") for line in src[:800] if line and line[0] != "#")))
    total = s.get("/records")[1]["total"]
    env = {k: v for k, v in os.environ.items() if k != "GIDX_INDEX"}
    proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "ingest", str(fresh), "-i", str(s.index), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    answered = 0
    while proc.poll() is None:  # the server keeps answering while the ingest writes
        status, body, _ = s.post_file("/query?k=3", SSA4.name, SSA4.read_bytes())
        assert status == 200, body
        assert s.get("/records?limit=1")[0] == 200
        answered += 1
        time.sleep(0.05)  # leave the ingest some CPU
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert answered >= 1
    status, page, _ = s.get("/records?limit=1000")
    assert page["total"] == total + 1 and "fresh_tss" in [r["name"] for r in page["records"]]
    status, row, _ = s.get("/records/fresh_tss")
    assert status == 200 and row["n_intervals"] == len(fresh.read_text().splitlines())
    # queries rank against a snapshot the server re-reads at most every SNAPSHOT_RECHECK
    # seconds (and keeps while a writer holds the catalog): the new record is ranked from then on
    from gidx.index import SNAPSHOT_RECHECK

    time.sleep(SNAPSHOT_RECHECK + 0.2)
    status, body, _ = s.post_file("/query?k=3", fresh.name, fresh.read_bytes())
    assert status == 200, body
    top = body["results"][0]
    assert top["record"] == "fresh_tss" and top["exact_score"] == pytest.approx(1.0)
    same_ranking(body["results"], in_process(s.index, fresh, k=3))


def test_shutdown_writes_queued_queries(yeast_index, tmp_path, serve_index):
    s = serve_index(_copy(yeast_index, tmp_path / "idx"))
    ids = []
    for f in (SSA4, PEAKS, TRANSCRIPTS, SSA4, PEAKS):
        status, body, _ = s.post_file("/query?k=4", f.name, f.read_bytes())
        assert status == 200, body
        ids.append(body["query_id"])
    t = time.monotonic()
    s.stop()
    assert time.monotonic() - t < 20, s.log_text()
    with duckdb.connect(str(s.index / "catalog.duckdb"), read_only=True) as c:
        stored = c.execute(f"select id, (select count(*) from query_results r where r.query_id = q.id) "
                           f"from queries q where id in ({','.join(map(str, ids))}) order by id").fetchall()
    assert stored == [(i, 4) for i in sorted(ids)]


def test_workers_share_the_port_and_store_each_query_once(yeast_index, tmp_path, serve_index):
    """`--workers 2`: two processes answer on one port; each query is stored once, and a
    shutdown writes what both had queued."""
    s = serve_index(_copy(yeast_index, tmp_path / "idx"), "--workers", "2")
    files = [SSA4, PEAKS, TRANSCRIPTS]
    want = {f.name: [(r["record"], r["exact_score"]) for r in in_process(s.index, f, k=4)] for f in files}
    got, errors = [], []

    def client(i: int) -> None:
        for j in range(4):
            f = files[(i + j) % len(files)]
            status, body, _ = s.post_file("/query?k=4", f.name, f.read_bytes())
            if status != 200:
                errors.append(body)
                continue
            got.append((f.name, body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert all([(r["record"], r["exact_score"]) for r in body["results"]] == want[name] for name, body in got)
    ids = [body["query_id"] for _, body in got]
    assert len(ids) == 16 and len(set(ids)) == 16
    assert s.stop() == 0, s.log_text()
    with duckdb.connect(str(s.index / "catalog.duckdb"), read_only=True) as c:
        stored = c.execute(f"select id, (select count(*) from query_results r where r.query_id = q.id) "
                           f"from queries q where id in ({','.join(map(str, ids))}) order by id").fetchall()
    assert stored == [(i, 4) for i in sorted(ids)]
