"""Shared fixtures: real BED collections, indexes built once per session, and helpers
to run the CLI in-process and to snapshot a catalog.

Indexes that tests modify are *copies* of a session-built index (a folder copy is
milliseconds; an ingest is about a second), so no test sees another's changes.
"""

from __future__ import annotations

import gzip
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import gidx

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"
HG19_SIZES = DATA / "chromsizes" / "hg19.chrom.sizes"
HG19_BEDS = DATA / "bed" / "hg19" / "chipseeker_geo"
YEAST = Path(gidx.__file__).resolve().parent / "data" / "sacCer3"
YEAST_FASTA = YEAST / "S_cerevisiae.fasta.gz"
YEAST_BEDS = YEAST / "bed"
# a real file with chrM records (the FASTA calls the mitochondrion chrmt)
YEAST_CHRM_BED = YEAST_BEDS / "winston_annotations" / "Scer_random_L1_N6000.bed.gz"

BED_SUFFIXES = (".bed", ".bed.gz", ".narrowPeak", ".narrowPeak.gz")


def bed_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(BED_SUFFIXES))


def record_name(path: Path, root: Path) -> str:
    """The record name gidx should give a file ingested as part of ``root`` (written here
    independently of gidx: relative path minus the BED suffix)."""
    rel = path.relative_to(root).as_posix().removesuffix(".gz")
    for suffix in (".bed", ".narrowPeak"):
        rel = rel.removesuffix(suffix)
    return rel


def count_data_lines(path: Path) -> int:
    """Intervals in a BED file, counted without gidx: non-blank lines that are not
    track/browser/# header lines and whose 2nd and 3rd fields are integers."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()
    n = 0
    for line in text.splitlines():
        f = line.rstrip("\r").split("\t")
        if len(f) >= 3 and f[1].isdigit() and f[2].isdigit():
            n += 1
    return n


def yeast_family(tmp_path: Path, n: int) -> Path:
    """n distinct yeast BED files (``tmp_path/family/copyNNN.bed``): the real intervals of
    one file shifted by a few bases per copy."""
    from gidx.bed import read_bed
    from gidx.genome import Genome

    g = Genome.from_fasta(YEAST_FASTA, cache_dir=tmp_path / "cache")
    src = read_bed(YEAST_BEDS / "winston_annotations" / "Scer_polIItranscripts-adjustedTSS.bed.gz", g).intervals
    out = tmp_path / "family"
    out.mkdir()
    for i in range(n):
        lines = [f"{g.names[c]}\t{max(0, s - i - 1)}\t{e}" for c, s, e in zip(src.chrom, src.start, src.end)]
        (out / f"copy{i:03d}.bed").write_text("\n".join(lines) + "\n")
    return out


# ---- catalog snapshots (read-only DuckDB, closed at once) ---------------------


def catalog_snapshot(index: Path) -> dict:
    """Everything an ingest could change, read straight from the files (not via gidx)."""
    import duckdb

    with duckdb.connect(str(index / "catalog.duckdb"), read_only=True) as c:
        snap = {
            "records": c.execute("select * from records order by id").fetchall(),
            "intervals": c.execute("select count(*), coalesce(sum(chrom_end - chrom_start), 0) from intervals").fetchall(),
            "chrom_aliases": c.execute("select * from chrom_aliases order by alias").fetchall(),
        }
    snap["vectors"] = vector_row_counts(index)
    snap["segments"] = sorted(str(f.relative_to(index)) for f in (index / "segments").rglob("*"))
    return snap


def vector_row_counts(index: Path) -> dict[str, int]:
    from gidx.vectors import VectorStore

    vs = VectorStore(index / "vectors.lance")
    return {t: vs._table(t).count_rows() for t in vs.tables()}


def sql1(index: Path, query: str):
    """Run one read-only query on a catalog with duckdb directly."""
    import duckdb

    with duckdb.connect(str(index / "catalog.duckdb"), read_only=True) as c:
        return c.execute(query).fetchall()


def records_by_name(index: Path) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in sql1(index, "select name, n_intervals, format, chromosomes, extra from records")}


# ---- session-built indexes -----------------------------------------------------


@pytest.fixture(scope="session")
def hg19_index(tmp_path_factory) -> Path:
    """hg19 (chrom.sizes, synthetic sequence) index holding the chipseeker_geo collection."""
    from gidx.index import Index

    path = tmp_path_factory.mktemp("hg19") / "idx"
    idx = Index.create(path, chrom_sizes=HG19_SIZES)
    rep = idx.ingest([HG19_BEDS])
    assert not rep.rejected, rep.rejected
    assert len(rep.added) == len(bed_files(HG19_BEDS))
    return path


@pytest.fixture(scope="session")
def yeast_index(tmp_path_factory) -> Path:
    """sacCer3 index on the bundled FASTA with the chrM=chrmt alias, holding every bundled BED file."""
    from gidx.index import Index

    path = tmp_path_factory.mktemp("yeast") / "idx"
    idx = Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    rep = idx.ingest([YEAST_BEDS])
    assert not rep.rejected, rep.rejected
    assert len(rep.added) == len(bed_files(YEAST_BEDS))
    return path


@pytest.fixture(scope="session")
def yeast_noalias_index(tmp_path_factory) -> Path:
    """An empty sacCer3 index on the bundled FASTA, no aliases (chrM is unknown to it)."""
    from gidx.index import Index

    path = tmp_path_factory.mktemp("yeast_noalias") / "idx"
    Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3")
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def hg19_copy(hg19_index, tmp_path) -> Path:
    return _copy(hg19_index, tmp_path / "hg19_idx")


@pytest.fixture
def yeast_copy(yeast_index, tmp_path) -> Path:
    return _copy(yeast_index, tmp_path / "yeast_idx")


@pytest.fixture
def yeast_noalias_copy(yeast_noalias_index, tmp_path) -> Path:
    return _copy(yeast_noalias_index, tmp_path / "yeast_noalias_idx")


# ---- running the CLI in-process through its real entry point ---------------------------


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("Error:")]


@pytest.fixture
def gidx_cli(capsys, monkeypatch):
    """``gidx_cli(*args)`` runs ``cli.main.main()`` (the console-script entry point, which
    turns a GidxError into one ``Error:`` line and exit status 2) with ``sys.argv`` patched."""
    from gidx.cli.main import main

    monkeypatch.delenv("GIDX_INDEX", raising=False)

    def run(*args) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["gidx", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        cap = capsys.readouterr()
        return CliResult(code, cap.out, cap.err)

    return run


# ---- `gidx serve` as a real subprocess (test_serve.py, test_browser.py) ------------------------


class ServedIndex:
    """A running ``gidx serve`` on a loopback port, and a small HTTP client for it (stdlib only)."""

    def __init__(self, proc, host: str, port: int, token: str | None, log: Path, index: Path):
        self.proc, self.host, self.port, self.token, self.log, self.index = proc, host, port, token, log, index
        self.base = f"http://{host}:{port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                token: str | None = "default", timeout: float = 60):
        """(status, parsed JSON or text, headers) of one request; ``token=None`` sends none."""
        import http.client
        import json

        hdrs = dict(headers or {})
        tok = self.token if token == "default" else token
        if tok is not None:
            hdrs.setdefault("Authorization", f"Bearer {tok}")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = data.decode(errors="replace")
        return r.status, parsed, dict(r.getheaders())

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post_json(self, path: str, obj, **kw):
        import json

        return self.request("POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"}, **kw)

    def post_file(self, path: str, filename: str, data: bytes, field: str = "file", **kw):
        import uuid

        b = uuid.uuid4().hex
        body = (f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
        return self.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={b}"}, **kw)

    def sql(self, statement: str):
        status, body, _ = self.post_json("/sql", {"sql": statement})
        assert status == 200, body
        return body["rows"]

    def stop(self, timeout: float = 30) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(index: Path, *args: str, token: str | None = None, log: Path | None = None) -> ServedIndex:
    """``gidx serve -i INDEX --port 0`` (any free port, printed on stderr), once /health answers."""
    import os
    import re
    import subprocess
    import tempfile
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("GIDX_INDEX", "GIDX_TOKEN")}
    if token is not None:
        env["GIDX_TOKEN"] = token  # the way the README recommends (not on the command line)
    log = log or Path(tempfile.mkstemp(prefix="gidx-serve-", suffix=".log")[1])
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "serve", "-i", str(index), "--port", "0",
                                 "-q", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    server = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gidx serve exited with {proc.returncode}:\n{log.read_text()}")
        if server is None:
            m = re.search(r"gidx serve: http://(127\.0\.0\.1):(\d+)/", log.read_text())
            if m:
                server = ServedIndex(proc, m.group(1), int(m.group(2)), token, log, Path(index))
        if server is not None:
            try:
                if server.get("/health", timeout=5)[0] == 200:
                    return server
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"gidx serve did not answer within 90 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def serve_index(tmp_path_factory):
    """``serve_index(index, *args, token=None)`` starts ``gidx serve``; all are stopped after the module."""
    started: list[ServedIndex] = []

    def start(index: Path, *args: str, token: str | None = None) -> ServedIndex:
        s = start_server(index, *args, token=token, log=tmp_path_factory.mktemp("serve-log") / "serve.log")
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def yeast_served(yeast_index, tmp_path_factory, serve_index) -> ServedIndex:
    """``gidx serve`` (no token) on a module-private copy of the yeast index."""
    return serve_index(_copy(yeast_index, tmp_path_factory.mktemp("served") / "idx"))
