"""``gidx serve``: an HTTP JSON API and a browser page over one index.

:func:`create_app` builds a FastAPI app around ONE warm :class:`gidx.Index`,
opened once and shared by every request (FastAPI runs the blocking work in
its thread pool, so queries are answered in parallel).

Routes (``/docs`` has the OpenAPI page)::

    POST /query           a BED upload (multipart field ``file``) or JSON
                          {"intervals": [[chrom, start, end], ...]} / {"bed": "..."}
    GET  /records         paged: ?offset=&limit=
    GET  /records/{name}  one record's catalog row
    GET  /queries/{id}    a stored query and its results
    POST /sql             {"sql": "..."}: one read-only statement
    GET  /health          ok, record count, index path, gidx version
    GET  /                the browser page (gidx/static/)

Nothing a request sends changes the index except ``POST /query`` storing its
query (as ``gidx query`` does). ``/sql`` runs on a read-only DuckDB connection
of its own with external access disabled (no COPY TO, no ``read_csv('/etc/…')``,
no ATTACH, no extensions), one SELECT/EXPLAIN statement at a time, with a time
limit. With a token every data route wants ``Authorization: Bearer TOKEN``;
without one the server must listen on a loopback address and only answers
requests whose Host is a loopback name (a DNS-rebinding guard).

Imported by ``gidx serve`` only: ``gidx --help`` and ``gidx query`` never load
FastAPI.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import re
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import __version__
from .errors import GidxError, IndexLockedError, InputError

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024  # "50M"
DEFAULT_FILENAME = "query.bed"
SQL_MAX_ROWS = 10_000  # rows /sql returns (more are cut, "truncated": true)
SQL_TIMEOUT = 10.0  # seconds before /sql is interrupted
SQL_MEMORY = "1GB"
SQL_ALLOWED = ("SELECT", "EXPLAIN")  # statement types /sql runs (SHOW/DESCRIBE/SUMMARIZE parse as SELECT)
RECORDS_PAGE_MAX = 1000
# paths anyone may fetch: the page (asks for the token) and the API description (no data)
PUBLIC_PATHS = ("/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
PUBLIC_PREFIXES = ("/static/",)


# ---- small helpers (also used by the CLI) ------------------------------------------------


def parse_size(text: str | int) -> int:
    """``50M``, ``512k``, ``1G``, ``1048576`` (binary units: 50M = 50 MiB) -> bytes."""
    if isinstance(text, int):
        n = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.I)
        if not m:
            raise GidxError(f"--max-upload {text!r}: expected a size such as 50M, 512K, 1G or a number of bytes")
        n = int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))
    if n < 1:
        raise GidxError(f"--max-upload {text!r}: must be at least one byte")
    return n


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and names that resolve only to them (``localhost``)."""
    h = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    if h.lower() == "localhost" or h.lower().endswith(".localhost"):
        return True
    import socket

    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(h, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def _jsonable(v: Any) -> Any:
    """A DuckDB / Arrow value as JSON (NaN and infinities as null, decimals as numbers)."""
    import datetime as dt
    import decimal
    import uuid

    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            return None
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return _jsonable(v.item())
    return str(v)


class ApiError(HTTPException):
    """An answer ``{"error": message, ...extra}`` with an HTTP status."""

    def __init__(self, status: int, message: str, headers: dict | None = None, **extra):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.extra = extra


class BodyTooLarge(ApiError):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than the server's limit of {limit:,} bytes (--max-upload)")


# ---- the guard: token, Host, body size (pure ASGI: runs before any body is read) ---------


class _Guard:
    def __init__(self, app, token: str | None, max_body: int, extra_hosts: tuple[str, ...] = ()):
        self.app = app
        self.token = token
        self.max_body = max_body
        self.extra_hosts = {h.lower().strip("[]") for h in extra_hosts}

    def _host_ok(self, headers: dict[bytes, bytes]) -> bool:
        host = headers.get(b"host", b"").decode("latin-1").strip()
        if not host:
            return True  # HTTP/1.0 clients; the socket is loopback-only anyway
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]" in host:
            name = host[1 : host.index("]")]
        name = name.lower()
        if name in self.extra_hosts or name == "localhost" or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.token is None and not self._host_ok(headers):
            # a loopback server without a token: refuse pages that reached it by another name
            return await _send_error(send, 403, "this server answers only to localhost/127.0.0.1 (start it with "
                                                "--token to serve other host names)")
        if self.token is not None and not public:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return await _send_error(send, 401, "missing or wrong token: send the header "
                                                    "'Authorization: Bearer TOKEN'" if auth else
                                         "this server needs a token: send the header 'Authorization: Bearer TOKEN'",
                                         {"www-authenticate": "Bearer"})
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                return await _send_error(send, 400, "bad Content-Length header")
            if n > self.max_body:
                return await _send_error(send, 413, BodyTooLarge(self.max_body).detail)
        limit, seen = self.max_body, 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


async def _send_error(send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


# ---- the app -------------------------------------------------------------------------------


class SqlBody(BaseModel):
    sql: str = Field(description="One read-only statement (SELECT, WITH ... SELECT, SHOW, DESCRIBE, EXPLAIN).",
                     examples=["select name, n_intervals from records order by n_intervals desc limit 5"])


QUERY_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary",
                                        "description": "The query BED file (plain or gzip)."}}}},
            "application/json": {"schema": {
                "type": "object",
                "properties": {
                    "intervals": {"type": "array", "items": {"type": "array"},
                                  "description": "[[chrom, start, end], ...] (0-based, half-open)",
                                  "example": [["chrI", 100, 200], ["chrII", 5000, 5600]]},
                    "bed": {"type": "string", "description": "BED text (instead of intervals)"},
                    "filename": {"type": "string", "description": "File name used in messages (default query.bed)"},
                }}},
        },
    }
}


class Server:
    """The state behind the routes: the warm Index and the catalog reads of the API."""

    def __init__(self, index_path: str | Path, *, token: str | None, max_upload: int,
                 sql_timeout: float = SQL_TIMEOUT, sql_max_rows: int = SQL_MAX_ROWS):
        from .index import Index

        self.path = Path(index_path)
        self.idx = Index.open(self.path, prefetch=True)
        self.token = token
        self.max_upload = max_upload
        self.sql_timeout = sql_timeout
        self.sql_max_rows = sql_max_rows
        # stored queries go to a background committer (ids at once, group commits), and
        # searches use the last catalog snapshot while another process (an ingest) writes
        self.idx.serve_mode()

    def close(self) -> None:
        self.idx.close()  # writes the stored queries still queued

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (a little) until this server's stored queries are in the catalog."""
        try:
            self.idx.query_log.flush(timeout)
        except TimeoutError:
            pass  # the catalog is busy: answer with what is there

    # -- catalog reads: a connection of our own, read-only, no file access ----------------

    @contextmanager
    def catalog(self, timeout: float | None = None):
        """A fresh read-only DuckDB connection to the catalog with no file access,
        closed on exit (retried while another process, an ingest, holds the file)."""
        config = {"enable_external_access": False, "memory_limit": SQL_MEMORY}
        with self.idx.catalog.duck(config=config) as conn:
            timer = None
            if timeout:
                timer = threading.Timer(timeout, conn.interrupt)
                timer.daemon = True
                timer.start()
            try:
                yield conn
            finally:
                if timer is not None:
                    timer.cancel()

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        with self.catalog() as c:
            cur = c.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [{k: _jsonable(v) for k, v in zip(cols, r)} for r in cur.fetchall()]

    # -- routes' work (blocking; run in the thread pool) -----------------------------------

    def health(self) -> dict:
        n = self.rows("select count(*) as n from records")[0]["n"]
        return {"ok": True, "records": n, "index": str(self.path.resolve()), "version": __version__}

    def records(self, offset: int, limit: int) -> dict:
        with self.catalog() as c:
            total = c.execute("select count(*) from records").fetchone()[0]
            cur = c.execute("select id, name, n_intervals, bp_covered, n_chromosomes, format, ingested_at "
                            "from records order by id limit ? offset ?", [limit, offset])
            cols = [d[0] for d in cur.description]
            rows = [{k: _jsonable(v) for k, v in zip(cols, r)} for r in cur.fetchall()]
        return {"total": total, "offset": offset, "limit": limit, "records": rows}

    def record(self, name: str) -> dict:
        rows = self.rows("select * from records where name = ?", [name])
        if not rows:
            raise ApiError(404, f"no such record: {name}")
        row = rows[0]
        if isinstance(row.get("extra"), str):
            try:
                row["extra"] = json.loads(row["extra"])
            except ValueError:
                pass
        return row

    def stored_query(self, qid: str) -> dict:
        if not re.fullmatch(r"\d{1,10}", qid):
            raise ApiError(404, f"no such query: {qid}")
        found = self._stored_query(int(qid))
        if found is None:  # maybe answered a moment ago and still queued for the catalog
            self.flush()
            found = self._stored_query(int(qid))
        if found is None:
            raise ApiError(404, f"no such query: {qid}")
        return found

    def _stored_query(self, qid: int) -> dict | None:
        with self.catalog() as c:
            cur = c.execute("select * from queries where id = ?", [qid])
            cols = [d[0] for d in cur.description]
            row = cur.fetchone()
            if row is None:
                return None
            cur = c.execute(
                "select r.rank, r.record_id, rec.name as record, r.score, r.exact_score, rec.n_intervals "
                "from query_results r left join records rec on rec.id = r.record_id "
                "where r.query_id = ? order by r.rank", [qid])
            rcols = [d[0] for d in cur.description]
            results = [{k: _jsonable(v) for k, v in zip(rcols, r)} for r in cur.fetchall()]
        return {"query": {k: _jsonable(v) for k, v in zip(cols, row)}, "results": results}

    def sql(self, sql: str) -> dict:
        import duckdb

        self.flush()  # this server's stored queries are visible to its SQL (as with Index.sql)
        with self.catalog(timeout=self.sql_timeout) as c:
            try:
                statements = c.extract_statements(sql)
            except duckdb.Error as e:
                raise ApiError(400, _first_line(e)) from None
            if len(statements) != 1:
                raise ApiError(400 if not statements else 403,
                               "no SQL statement given" if not statements else
                               f"one statement at a time, got {len(statements)}")
            kind = statements[0].type.name
            if kind not in SQL_ALLOWED:
                raise ApiError(403, f"read-only: {kind} statements are not allowed here (SELECT, WITH, SHOW, "
                                    "DESCRIBE, SUMMARIZE and EXPLAIN are)")
            try:
                cur = c.execute(sql)
                cols = [d[0] for d in cur.description] if cur.description else []
                types = [str(d[1]) for d in cur.description] if cur.description else []
                rows = cur.fetchmany(self.sql_max_rows + 1) if cols else []
            except duckdb.InterruptException:
                raise ApiError(400, f"the statement ran longer than {self.sql_timeout:g} s and was stopped") from None
            except duckdb.PermissionException as e:
                raise ApiError(403, _first_line(e)) from None
            except duckdb.Error as e:
                msg = _first_line(e)
                if "read-only mode" in msg or "read-only" in msg.lower():
                    raise ApiError(403, msg) from None
                raise ApiError(400, msg) from None
        truncated = len(rows) > self.sql_max_rows
        rows = rows[: self.sql_max_rows]
        return {"columns": cols, "types": types, "rows": [[_jsonable(v) for v in r] for r in rows],
                "row_count": len(rows), "truncated": truncated}

    def query(self, bed_path: Path, *, k: int, rerank: int, no_rerank: bool, exact: bool, name: str | None) -> dict:
        if exact and no_rerank:
            raise GidxError("exact and no_rerank contradict each other: pick one")
        # the upload's temp file is gone after the answer: store where it came from instead
        table = self.idx.query(bed_path, k=k, rerank=None if no_rerank else rerank, exact=exact, name=name,
                               source=f"upload:{bed_path.name}")
        meta = table.schema.metadata or {}
        qid = meta.get(b"gidx.query_id", b"").decode()
        return {
            "query_id": int(qid) if qid.isdigit() else None,
            "mode": meta.get(b"gidx.mode", b"").decode(),
            "elapsed_ms": float(meta.get(b"gidx.elapsed_ms", b"0") or 0),
            "warnings": [w for w in meta.get(b"gidx.warnings", b"").decode().split("\n") if w],
            "k": k,
            "results": [{c: _jsonable(v) for c, v in r.items()} for r in table.to_pylist()],
        }


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _safe_filename(name: str | None) -> str:
    """The base name of an uploaded file, without folders or control characters."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()[:200]
    return base if base not in ("", ".", "..") else DEFAULT_FILENAME


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(field: str, value: Any, kind: type) -> Any:
    """A parameter sent in a JSON body or a form field, checked like the query string's."""
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ApiError(400, f"{field}: expected {kind.__name__}, got {value!r}")


def _intervals_to_bed(items: Any) -> str:
    if not isinstance(items, list):
        raise ApiError(400, "intervals: expected a list of [chrom, start, end]")
    lines = []
    for i, it in enumerate(items):
        if not (isinstance(it, (list, tuple)) and len(it) >= 3 and isinstance(it[0], str)
                and all(isinstance(x, int) and not isinstance(x, bool) for x in it[1:3])):
            raise ApiError(400, f"intervals[{i}]: expected [chrom, start, end] with integer start and end, got {it!r}")
        if any(c in it[0] for c in "\t\r\n"):
            raise ApiError(400, f"intervals[{i}]: chromosome name contains a tab or a line break")
        lines.append("\t".join([it[0], str(it[1]), str(it[2])] + [str(x) for x in it[3:]]))
    return "\n".join(lines) + "\n"


def create_app(index_path: str | Path, *, token: str | None = None, max_upload: int | str = DEFAULT_MAX_UPLOAD,
               sql_timeout: float = SQL_TIMEOUT, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The FastAPI app over the index at ``index_path`` (opened now, once).

    ``token``: required as ``Authorization: Bearer TOKEN`` on every data route.
    ``max_upload``: largest request body in bytes (or ``"50M"``), checked against
    Content-Length and counted while reading. ``allowed_hosts``: Host names accepted
    besides the loopback ones when there is no token.
    """
    limit = parse_size(max_upload)
    srv = Server(index_path, token=token, max_upload=limit, sql_timeout=sql_timeout)

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            await run_in_threadpool(srv.close)

    app = FastAPI(
        title="gidx",
        version=__version__,
        summary="Similarity search over sets of genomic intervals (seqpare), on one index.",
        description=("Upload a BED file to `POST /query` to rank the index's records by seqpare similarity; "
                     "browse records and stored queries; run read-only SQL on the catalog. "
                     + ("Every data route needs `Authorization: Bearer TOKEN` (the Authorize button)."
                        if token else "")),
        lifespan=lifespan,
    )
    app.state.gidx = srv
    bearer = HTTPBearer(auto_error=False, description="The --token given to gidx serve.")
    secured = [Depends(bearer)] if token else []  # the guard checks; this documents it in /docs
    app.add_middleware(_Guard, token=token, max_body=limit, extra_hosts=tuple(allowed_hosts))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        body = {"error": exc.detail if isinstance(exc.detail, str) else str(exc.detail)}
        body.update(getattr(exc, "extra", {}))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
            msgs.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return JSONResponse({"error": "; ".join(msgs) or "invalid request"}, status_code=400)

    @app.exception_handler(GidxError)
    async def _gidx_error(request: Request, exc: GidxError):
        if isinstance(exc, IndexLockedError):
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        body: dict = {"error": str(exc)}
        if isinstance(exc, InputError) and len(exc.problems) > 1:
            body["problems"] = exc.problems
        return JSONResponse(body, status_code=400)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):  # logged with its traceback by uvicorn
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {_first_line(exc)})"}, status_code=500)

    # -- the page ------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- data routes -----------------------------------------------------------------------

    @app.get("/health", dependencies=secured, tags=["index"])
    def health() -> dict:
        """ok, record count, index path and gidx version."""
        return srv.health()

    @app.get("/records", dependencies=secured, tags=["index"])
    def records(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=RECORDS_PAGE_MAX)) -> dict:
        """The records, by id, one page at a time (`total` counts them all)."""
        return srv.records(offset, limit)

    @app.get("/records/{name:path}", dependencies=secured, tags=["index"])
    def record(name: str) -> dict:
        """One record's catalog row (names may contain `/`: `winston_annotations/SSA4`)."""
        return srv.record(name)

    @app.get("/queries/{qid}", dependencies=secured, tags=["query"])
    def stored_query(qid: str) -> dict:
        """A stored query (as `POST /query` saved it) and its results joined to record names."""
        return srv.stored_query(qid)

    @app.post("/sql", dependencies=secured, tags=["index"])
    def sql(body: SqlBody) -> dict:
        """Run one read-only statement on the catalog (as `gidx sql`): columns, types and rows
        (at most 10,000; `truncated` says if there were more). Writing statements, file
        access, ATTACH, extensions, SET and PRAGMA are refused with 403."""
        return srv.sql(body.sql)

    @app.post("/query", dependencies=secured, tags=["query"], openapi_extra=QUERY_BODY_DOC)
    async def query(
        request: Request,
        k: int | None = Query(None, ge=1, description="Number of results (default 20)."),
        rerank: int | None = Query(None, ge=1, description="Vector candidates re-ranked by exact seqpare (default 200)."),
        no_rerank: bool | None = Query(None, description="Raw vector ranking."),
        exact: bool | None = Query(None, description="Exhaustive exact seqpare ranking over all records."),
        name: str | None = Query(None, description="Name stored with the query (default: the file name)."),
    ) -> dict:
        """Rank the records by similarity to the uploaded BED file; the query is stored
        (`GET /queries/{query_id}`). Parameters go in the query string, or as form fields /
        JSON keys next to the data."""
        params: dict[str, Any] = {"k": k, "rerank": rerank, "no_rerank": no_rerank, "exact": exact, "name": name}
        tmp = Path(tempfile.mkdtemp(prefix="gidx-serve-"))
        try:
            filename, body_params = await _receive_query(request, tmp)
            for key, kind in (("k", int), ("rerank", int), ("no_rerank", bool), ("exact", bool), ("name", str)):
                if body_params.get(key) is not None:
                    params[key] = _coerce(key, body_params[key], kind)
            if params["k"] is None:
                params["k"] = 20
            if params["rerank"] is None:
                params["rerank"] = 200
            for key in ("k", "rerank"):
                if params[key] < 1:
                    raise ApiError(400, f"{key} must be at least 1")
            try:
                return await run_in_threadpool(srv.query, tmp / filename, k=params["k"], rerank=params["rerank"],
                                               no_rerank=bool(params["no_rerank"]), exact=bool(params["exact"]),
                                               name=params["name"])
            except GidxError as e:
                raise _strip_dir(e, tmp) from None
        finally:
            await run_in_threadpool(shutil.rmtree, tmp, True)

    return app


def _strip_dir(e: GidxError, folder: Path) -> GidxError:
    """The same error with the temporary folder taken out of its messages (``peaks.bed:12: ...``)."""
    prefixes = {str(folder) + os.sep, str(folder.resolve()) + os.sep}

    def clean(s: str) -> str:
        for p in prefixes:
            s = s.replace(p, "")
        return s

    if isinstance(e, InputError):
        out = InputError([clean(p) for p in e.problems], e.total, e.hint and clean(e.hint))
    else:
        out = type(e).__new__(type(e))
        out.args = tuple(clean(a) if isinstance(a, str) else a for a in e.args)
        out.__dict__.update(e.__dict__)
    return out


async def _receive_query(request: Request, tmp: Path) -> tuple[str, dict]:
    """Write the query's BED data into ``tmp``; returns (file name, other fields sent)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16, max_part_size=64 * 1024)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(400, "no file: send the BED file as the multipart field 'file'")
            filename = _safe_filename(upload.filename)
            with open(tmp / filename, "wb") as out:
                while chunk := await upload.read(1 << 20):
                    await run_in_threadpool(out.write, chunk)
            return filename, {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
        finally:
            await form.close()
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        try:
            body = await request.json()
        except ValueError as e:
            raise ApiError(400, f"the body is not valid JSON ({e})") from None
        if not isinstance(body, dict) or ("intervals" in body) == ("bed" in body):
            raise ApiError(400, 'send JSON {"intervals": [["chr1", 100, 200], ...]} or {"bed": "chr1\\t100\\t200\\n..."}')
        filename = _safe_filename(_coerce("filename", body.get("filename"), str))
        text = _intervals_to_bed(body["intervals"]) if "intervals" in body else _coerce("bed", body["bed"], str)
        await run_in_threadpool((tmp / filename).write_text, text)
        return filename, {k: v for k, v in body.items() if k not in ("intervals", "bed", "filename")}
    raise ApiError(415, "send the BED file as multipart/form-data (field 'file') or JSON "
                        '{"intervals": [...]} / {"bed": "..."}')
