"""The tile memo: embeddings of genome tiles, computed once, stored in Zarr, reused.

Content address
    A tile's embedding depends only on the genome (its digest), the tiling
    (``Tiling.params()``), the encoder (``identity()``, incl. a weights hash) and the
    stored dtype. ``address = sha256(json of those four)``; the memo lives in the Zarr
    group ``<root>/<address>/`` whose attributes record the inputs. Any change of an
    input gives another address, so a stale embedding is never served.

Layout (format 2)
    One array per (chromosome code, layer, offset) grid, created on first write:
    ``emb.c<code>.l<layer>.o<offset>`` of shape ``(n_tiles, dim)`` (fill NaN) and
    ``filled.c<code>.l<layer>.o<offset>`` of shape ``(n_tiles,)`` bool (fill False), both
    chunked along tiles with the *same* chunk length, the whole ``dim`` in one chunk.
    The chunk length of layer K is ``chunk_bp // size_K`` tiles (default 128 kbp:
    1024 tiles of 128 bp = 1 MiB at dim 256 float32, 128 tiles of 1 kbp), capped at
    the grid's tile count, so every chunk holds the same amount of sequence and costs
    about the same to compute, whatever its layer. (128 kbp rather than more: on a cold
    memo each touched chunk is computed whole, see below, and sparse lookups on a large
    genome touch many chunks.)

    Chunks are stored **uncompressed** (``chunk_codec: "raw"``, Zarr codecs ``[bytes]``
    only): a chunk file is then the chunk's rows as a plain little-endian C array, which
    the read path memory-maps (see Reads). Zarr stays the format of record -- ``zarr``
    reads and writes these arrays like any other, and all writes go through it. The cost
    is disk: embeddings of a learned model compress by a few percent at most, but kmer
    count sketches are sparse and compress ~6.7x under zstd (whole-genome fill, float32:
    66 GB per Gbp of genome raw against 9.9 GB zstd; ``dtype="float16"`` halves it).
    ``codec="zstd"`` keeps the compressed layout of format 1 for a memo that must be
    small; a cold process then decodes every chunk it touches, 3-4x slower end to end
    (benchmarks/RESULTS.md, "Tile memo read path").

Formats
    The group attribute ``gidx_tile_memo`` is the format: 1 = zstd chunks (gidx before
    the memory-mapped read path; no ``chunk_codec`` attribute), 2 = ``chunk_codec``
    recorded (``raw`` or ``zstd``). Both are read; how a chunk is read is decided per
    array from its own Zarr metadata (codecs, chunk key encoding, dtype, shape), and
    anything the fast paths do not recognise is read through ``zarr``, so no layout is
    ever misread. An existing memo keeps the chunk layout and codec it was created with
    (new arrays in a format-1 memo are zstd, like the rest of it). A memo whose format is
    newer than this gidx knows is refused with an error naming the folder.

Chunk-aligned writes (why whole chunks)
    Zarr rewrites a chunk as a whole; a write of part of a chunk is read-modify-write
    and the last writer wins (STACK.md §5), so two processes filling different tiles
    of one chunk could lose each other's tiles while both set their ``filled`` bits:
    a mask without data. The memo therefore only ever writes **whole chunks**: a
    missing tile makes its whole chunk be computed (all its tiles, not only the
    missing ones) and written in one piece. Every chunk write is then complete and
    deterministic, so concurrent writers of the same chunk (two ``gidx`` processes,
    or ranks of a genome-wide fill) write identical bytes and lose nothing; no lock
    is needed. The cost is computing up to one chunk of extra tiles per touched
    chunk on a cold memo (cheap for kmer; for a model, warm the memo with ``fill``).
    Consequently a chunk is either fully filled or not at all.

Write order (crash safety)
    The data chunk is written first, the ``filled`` chunk after it. A crash between the
    two leaves data without its mask: the chunk counts as missing and is recomputed.
    A mask is never set before its data. Zarr's local store writes each chunk to a
    temporary file and renames it into place, so a chunk is never seen half-written.

Reads
    A chunk is looked up once per process: its ``filled`` chunk file is read (a missing
    or not all-True mask means "not stored"; masks are read before data, so data is
    there), then its data chunk file is memory-mapped (raw) or decoded (zstd, or through
    ``zarr`` for anything else) and kept in an in-process table of ``cache_bytes``
    worth of chunks (LRU, one pool per layer; a memory-mapped chunk costs page cache,
    shared by every process reading the memo, not private memory). Every later lookup of
    its tiles is a table lookup: ``get(keys)`` resolves all keys with a few numpy
    operations (chunk of each key, the chunk's address in memory) and gathers the rows
    in one compiled loop; ``interval_embeddings`` skips even the gather and averages
    straight from the chunks (``rows``). A data chunk that is missing although its mask
    is set (lost file), or that cannot be decoded, is recomputed with a warning. Memo
    content never changes once written, so the table needs no invalidation except after
    ``verify(repair=True)``. Mapping a chunk file is safe against concurrent writers
    because Zarr never rewrites a chunk file in place (see Write order): a writer of the
    same chunk renames identical bytes over it, and the mapping keeps the file it opened.
    Returned embeddings are float32 whatever the stored dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GidxError
from .genome import Genome
from .pipeline import Pipeline
from .tiling import TileAssignment, TileKeys, Tiling

MEMO_FORMAT = 2  # the format this gidx writes; see "Formats" above
READABLE_FORMATS = (1, 2)
DTYPES = ("float32", "float16")
CODECS = ("raw", "zstd")
DEFAULT_CODEC = "raw"
DEFAULT_CHUNK_BP = 1 << 17  # 128 kbp of sequence per chunk, whatever the layer
DEFAULT_CACHE_BYTES = 1 << 30

Grid = tuple[int, int, int]  # (chromosome code, layer, offset)
ChunkRef = tuple[Grid, int]  # (grid, chunk number along tiles)

def memo_inputs(genome: Genome, tiling: Tiling, encoder, dtype: str) -> dict:
    return {"genome": genome.digest, "tiling": tiling.params(), "encoder": encoder.identity(), "dtype": dtype}


def memo_address(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def open_index_memo(index_path: str | Path, genome: Genome, tiling: Tiling, encoder, dtype: str = "float32",
                    **options) -> "TileMemo":
    """The memo of an index folder (``<index>/tiles.zarr``) for explicit genome, tiling and
    encoder (where these come from -- CLI options now, the catalog later -- is the caller's)."""
    return TileMemo(Path(index_path) / "tiles.zarr", genome, tiling, encoder, dtype, **options)


@dataclass
class MemoStats:
    """Counters since the memo was opened (or ``reset``). A tile is *read* when served
    from a stored chunk (disk or cache) and *computed* when its chunk had to be embedded;
    ``tiles_computed`` counts every tile of the computed chunks."""

    tiles_requested: int = 0
    tiles_read: int = 0
    tiles_computed: int = 0
    chunks_read: int = 0  # from disk
    chunks_cached: int = 0  # from the in-process cache
    chunks_computed: int = 0

    def reset(self) -> None:
        for name in asdict(self):
            setattr(self, name, 0)


@dataclass
class FillReport:
    chunks: int  # chunks of the requested grids
    skipped: int  # already filled before the run
    computed: int
    tiles_computed: int
    seconds: float


class _Layout:
    """Tiles and chunks of every grid; a small picklable object (workers need it).

    Chunk length of a grid = ``chunk_bp // tile size`` tiles, capped at the grid's tile
    count (Zarr pads an edge chunk to full size when decoding; small chromosomes would
    otherwise decode mostly padding).

    Lookups of many keys at once use flat tables over all grids (``tables()``): grid
    number ``(chrom * layers + layer) * offsets + offset`` -> tile count, chunk length and
    the number of the grid's first chunk in a genome-wide chunk numbering (chunk ids
    follow (chrom, layer, offset, chunk) order, so sorted keys have sorted chunk ids).
    """

    def __init__(self, tiling: Tiling, chrom_lengths: list[int], chunk_bp: int):
        self.tiling, self.chrom_lengths, self.chunk_bp = tiling, chrom_lengths, chunk_bp
        self._sizes: dict[Grid, tuple[int, int]] = {}  # grid -> (n_tiles, chunk_len); lookups are hot
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __getstate__(self):
        return {**self.__dict__, "_tables": None}

    def _grid_sizes(self, grid: Grid) -> tuple[int, int]:
        if grid not in self._sizes:
            chrom, layer, offset = grid
            n = self.tiling.n_tiles(self.chrom_lengths[chrom], layer, offset)
            self._sizes[grid] = n, max(1, min(self.chunk_bp // self.tiling.sizes[layer], n))
        return self._sizes[grid]

    def n_tiles(self, grid: Grid) -> int:
        return self._grid_sizes(grid)[0]

    def chunk_len(self, grid: Grid) -> int:
        return self._grid_sizes(grid)[1]

    def n_chunks(self, grid: Grid) -> int:
        return -(-self.n_tiles(grid) // self.chunk_len(grid))

    def tile_range(self, ref: ChunkRef) -> tuple[int, int]:
        grid, chunk = ref
        n, length = self._grid_sizes(grid)
        return chunk * length, min((chunk + 1) * length, n)

    def grid_number(self, chrom: np.ndarray, layer: np.ndarray, offset: np.ndarray) -> np.ndarray:
        t = self.tiling
        return (np.asarray(chrom, dtype=np.int64) * t.layers + layer) * t.offsets + offset

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_tiles, chunk_len, first chunk id) per grid number; the same numbers as
        ``n_tiles`` / ``chunk_len`` / ``n_chunks``, for all grids at once."""
        if self._tables is None:
            t = self.tiling
            sizes = np.asarray(t.sizes, dtype=np.int64)[None, :, None]
            shifts = np.arange(t.offsets, dtype=np.int64)[None, None, :] * (sizes // t.offsets)
            lengths = np.asarray(self.chrom_lengths, dtype=np.int64)[:, None, None]
            n = np.maximum(0, (lengths - shifts) // sizes)
            length = np.maximum(1, np.minimum(self.chunk_bp // sizes, n))
            chunks = -(-n // length)
            n, length, chunks = n.ravel(), length.ravel(), chunks.ravel()
            self._tables = n, length, np.cumsum(chunks) - chunks
        return self._tables

    @property
    def total_chunks(self) -> int:
        n, length, first = self.tables()
        return int(first[-1] + -(-n[-1] // length[-1])) if len(n) else 0


class GenomeReader:
    """Base of pipeline preprocess stages that read sequence from ``self.genome``.

    Picklable (the genome travels as its JSON description, not its open FASTA), and
    ``reopen()`` -- the pipeline's ``worker_init`` -- gives a worker its own FASTA handle:
    a forked worker must not share the parent's file offset.
    """

    genome: Genome

    def reopen(self) -> None:
        self.genome = Genome.from_json(self.genome.to_json(), cache_dir=self.genome.cache_dir)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["genome"] = (self.genome.to_json(), self.genome.cache_dir)
        return state

    def __setstate__(self, state):
        text, cache_dir = state["genome"]
        self.__dict__.update(state, genome=Genome.from_json(text, cache_dir=cache_dir))


class _TileSequences(GenomeReader):
    """preprocess stage: a chunk reference -> the sequences of its tiles. Fetches the
    chunk's whole span once and slices it (a grid's tiles are adjacent)."""

    def __init__(self, genome: Genome, layout: _Layout):
        self.genome, self.layout = genome, layout

    def __call__(self, ref: ChunkRef) -> list[str]:
        (chrom, layer, offset), _ = ref
        t0, t1 = self.layout.tile_range(ref)
        starts, ends = self.layout.tiling.tile_bounds(layer, offset, np.arange(t0, t1))
        span = self.genome.fetch(np.array([chrom]), starts[:1], ends[-1:])[0]
        size = int(ends[0] - starts[0])
        return [span[a : a + size] for a in (starts - starts[0]).tolist()]


class _ChunkCache:
    """Chunks resident in this process, as a table the lookups index with numpy.

    ``n_slots`` chunks per layer (``budget_bytes`` over one chunk of every layer, as
    before), so a slot is entry ``layer * n_slots + slot``. Each entry holds a chunk's
    rows -- a memory-mapped chunk file, or an array decoded or computed here -- and that
    array's address; ``entry_of[chunk id]`` is the entry holding a chunk, or -1. Eviction:
    least recently used entry of the layer. Lookups keep references to the arrays they
    resolved (``TileRows``: the entry list as it was, copied on write), so evicting an
    entry never frees memory a lookup still reads. Memo content never changes once written, so nothing needs invalidating
    except after a repair (``clear``).
    """

    def __init__(self, slot_rows: list[int], row_bytes: int, budget_bytes: int, total_chunks: int):
        self.slot_rows, self.row_bytes = slot_rows, row_bytes
        self.n_slots = max(1, budget_bytes // (sum(slot_rows) * row_bytes))
        self.total_chunks = total_chunks
        self.clear()

    def clear(self) -> None:
        size = len(self.slot_rows) * self.n_slots
        self.arrays: list[np.ndarray | None] = [None] * size
        self._shared = False  # a lookup holds self.arrays: copy it before the next change
        self.address = np.zeros(size, dtype=np.int64)
        self.owner = np.full(size, -1, dtype=np.int64)
        self.stamp = np.full(size, -1, dtype=np.int64)
        self.entry_of = np.full(self.total_chunks, -1, dtype=np.int64)
        self.clock = 0

    def touch(self, entries: np.ndarray) -> None:
        self.clock += 1
        self.stamp[entries] = self.clock

    def snapshot(self) -> list:
        """The arrays now resident, kept valid for the caller (copy on the next insert)."""
        self._shared = True
        return self.arrays

    def insert(self, chunk_id: int, layer: int, block: np.ndarray) -> int:
        """Store ``block`` (C-contiguous rows of one chunk) for ``chunk_id``; its address."""
        lo = layer * self.n_slots
        entry = lo + int(np.argmin(self.stamp[lo : lo + self.n_slots]))
        old = int(self.owner[entry])
        if old >= 0:
            self.entry_of[old] = -1
        address = _address(block)
        if self._shared:
            self.arrays, self._shared = list(self.arrays), False
        self.arrays[entry], self.address[entry], self.owner[entry] = block, address, chunk_id
        self.entry_of[chunk_id] = entry
        self.clock += 1
        self.stamp[entry] = self.clock
        return address


def _address(block: np.ndarray) -> int:
    return int(block.__array_interface__["data"][0])


@dataclass
class TileRows:
    """Resolved memo rows of a list of tile keys: ``address[i]`` is where key i's row
    (``dim`` values of ``dtype``) lies in memory. ``keep`` holds the arrays those
    addresses point into: they stay valid while this object lives, whatever the memo's
    cache evicts meanwhile. Read them with the compiled helpers in ``gidx.embed``
    (``gather_rows``, the interval means); never after dropping the object."""

    address: np.ndarray  # int64, one per key
    dim: int
    dtype: str
    keep: list


# ---- reading chunk files directly -------------------------------------------------------------

_LITTLE = ("little", None)


@dataclass(frozen=True)
class _ArrayFiles:
    """How to read one Zarr array's chunk files without Zarr: ``kind`` is ``raw`` (the
    chunk file is the chunk's bytes, memory-mappable), ``zstd`` (one zstd frame of them)
    or ``zarr`` (anything else: read through zarr)."""

    folder: str
    kind: str
    separator: str
    chunk_bytes: int

    def chunk_path(self, coords: tuple[int, ...]) -> str:
        return self.folder + "/c" + self.separator + self.separator.join(map(str, coords))


def _array_files(folder: Path, dtype: str, shape: tuple[int, ...], chunks: tuple[int, ...]) -> _ArrayFiles | None:
    """Read the array's ``zarr.json`` and say how its chunks can be read; None if the
    array does not exist. Only exactly the layouts gidx writes get a fast path: Zarr
    v3, regular chunks of the expected shape, default chunk keys, ``bytes``
    (little-endian) alone or followed by ``zstd``, no storage transformers, the expected
    dtype and shape. Everything else is ``zarr``."""
    try:
        with open(os.path.join(folder, "zarr.json"), "rb") as handle:
            meta = json.loads(handle.read())
    except FileNotFoundError:
        return None
    folder = str(folder)
    chunk_bytes = int(np.prod(chunks)) * np.dtype(dtype).itemsize

    def slow() -> _ArrayFiles:
        return _ArrayFiles(folder, "zarr", "/", chunk_bytes)

    try:
        grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
        codecs = [c["name"] for c in meta["codecs"]]
        first = meta["codecs"][0].get("configuration") or {}
        ok = (meta.get("zarr_format") == 3 and meta.get("node_type") == "array" and not meta.get("storage_transformers")
              and meta["data_type"] == np.dtype(dtype).name and tuple(meta["shape"]) == tuple(shape)
              and grid["name"] == "regular" and tuple(grid["configuration"]["chunk_shape"]) == tuple(chunks)
              and keys["name"] == "default" and codecs[0] == "bytes" and first.get("endian") in _LITTLE
              and codecs[1:] in ([], ["zstd"]))
        separator = (keys.get("configuration") or {}).get("separator", "/")
    except (KeyError, IndexError, TypeError, AttributeError):
        return slow()
    if not ok or separator not in ("/", "."):
        return slow()
    return _ArrayFiles(folder, "zstd" if codecs[1:] else "raw", separator, chunk_bytes)


def _read_chunk_bytes(files: _ArrayFiles, coords: tuple[int, ...], mmap_ok: bool) -> np.ndarray | memoryview | None:
    """A chunk's decoded bytes (uint8 array, or a read-only memory map for ``raw`` when
    ``mmap_ok``); None if the chunk file does not exist. Raises if it cannot be decoded."""
    import mmap

    path = files.chunk_path(coords)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return None
    with handle:
        if files.kind == "raw":
            size = os.fstat(handle.fileno()).st_size
            if size != files.chunk_bytes:
                raise ValueError(f"chunk file {path} has {size} bytes, expected {files.chunk_bytes}")
            if mmap_ok:
                try:
                    return memoryview(mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ))
                except (OSError, ValueError):  # out of map areas (vm.max_map_count): read it instead
                    pass
            return np.frombuffer(handle.read(), dtype=np.uint8)
        data = handle.read()
    from numcodecs.zstd import Zstd

    out = np.empty(files.chunk_bytes, dtype=np.uint8)
    decoded = Zstd().decode(data, out=out)
    if np.asarray(decoded).nbytes != files.chunk_bytes:
        raise ValueError(f"chunk file {path} decodes to {np.asarray(decoded).nbytes} bytes, "
                         f"expected {files.chunk_bytes}")
    return out


class TileMemo:
    def __init__(self, root: str | Path, genome: Genome, tiling: Tiling, encoder, dtype: str = "float32", *,
                 chunk_bp: int = DEFAULT_CHUNK_BP, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 workers: int = 0, batch_size: int | None = None, codec: str = DEFAULT_CODEC):
        if dtype not in DTYPES:
            raise GidxError(f"tile memo dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if codec not in CODECS:
            raise GidxError(f"tile memo codec must be one of {', '.join(CODECS)}, got {codec!r}")
        try:
            tiling.require_max_size(encoder.max_len)
        except ValueError as e:
            raise GidxError(f"tiling {tiling.params()} does not fit encoder {encoder.name}: {e}") from None
        self.root, self.genome, self.tiling, self.encoder, self.dtype = Path(root), genome, tiling, encoder, dtype
        self.inputs = memo_inputs(genome, tiling, encoder, dtype)
        self.address = memo_address(self.inputs)
        self.path = self.root / self.address
        self.dim = int(encoder.dim)
        self.workers = workers
        self.batch_size = batch_size or int(getattr(encoder, "batch_size", 1024))
        self.stats = MemoStats()
        self._group = None
        self._listed: dict | None = None  # name -> zarr array, once listed
        self._arrays: dict[Grid, tuple] = {}
        self._files: dict[Grid, tuple[_ArrayFiles, _ArrayFiles] | None] = {}
        # an existing memo keeps the format, chunk layout and codec it was created with
        stored = self._stored_attributes()
        self.format = _check_format(stored, self.path) if stored is not None else MEMO_FORMAT
        self.chunk_bp = int((stored or {}).get("chunk_bp", 0)) or int(chunk_bp)
        self.codec = _stored_codec(stored) if stored is not None else codec
        if self.chunk_bp < 1:
            raise GidxError(f"chunk_bp must be positive, got {chunk_bp}")
        self.layout = _Layout(tiling, [int(x) for x in genome.lengths_list], self.chunk_bp)
        self._sequences = _TileSequences(genome, self.layout)
        self._row_bytes = self.dim * np.dtype(dtype).itemsize
        self._cache = _ChunkCache([max(1, self.chunk_bp // size) for size in tiling.sizes], self._row_bytes,
                                  cache_bytes, self.layout.total_chunks)
        self._position = np.zeros(self.layout.total_chunks, dtype=np.int64)  # scratch for rows()

    # ---- store ------------------------------------------------------------

    def _stored_attributes(self) -> dict | None:
        """The group attributes of an existing memo, None if there is none yet."""
        try:
            meta = json.loads((self.path / "zarr.json").read_text())
        except FileNotFoundError:
            return None
        return meta.get("attributes", {})

    def _open_group(self, create: bool):
        if self._group is None:
            if not (self.path / "zarr.json").is_file() and not create:
                return None
            # the parent is a group too, so zarr.open_group(root) lists the memos; the
            # attributes are written with the group's metadata, in one atomic file
            _open_or_create_group(self.root)
            self._group = _open_or_create_group(self.path, {
                "gidx_tile_memo": self.format, "inputs": self.inputs, "chunk_bp": self.chunk_bp,
                **({"chunk_codec": self.codec} if self.format >= 2 else {}),
                "genome_name": self.genome.name, "chroms": list(self.genome.names),
                "chrom_lengths": [int(x) for x in self.genome.lengths_list]})
            # another process may have created it first, with other options: its layout wins,
            # but this object's layout is fixed, so say so instead of writing a mixture
            attrs = dict(self._group.attrs)
            if int(attrs.get("chunk_bp", 0)) != self.chunk_bp or _stored_codec(attrs) != self.codec:
                self._group = None
                raise GidxError(f"tile memo {self.path} was just created by another process with chunk_bp "
                                f"{attrs.get('chunk_bp')} / codec {_stored_codec(attrs)}; open it again")
        return self._group

    @staticmethod
    def _names(grid: Grid) -> tuple[str, str]:
        chrom, layer, offset = grid
        suffix = f"c{chrom}.l{layer}.o{offset}"
        return f"emb.{suffix}", f"filled.{suffix}"

    def _grid_arrays(self, grid: Grid, create: bool):
        """(emb, filled) of a grid, or None if it has none yet and ``create`` is False.

        The group's arrays are listed once (one call that opens them all concurrently,
        instead of two calls per grid); arrays another process creates afterwards are
        seen after ``refresh()`` or when this process creates them itself.
        """
        if grid in self._arrays:
            return self._arrays[grid]
        group = self._open_group(create)
        if group is None:
            return None
        if self._listed is None:
            self._listed = dict(group.arrays())
        emb_name, filled_name = self._names(grid)
        if emb_name in self._listed and filled_name in self._listed:
            arrays = self._listed[emb_name], self._listed[filled_name]
        elif not create:
            return None
        else:
            arrays = self._create_arrays(group, grid)
        self._arrays[grid] = arrays
        return arrays

    def _create_arrays(self, group, grid: Grid):
        import zarr

        emb_name, filled_name = self._names(grid)
        chrom, layer, offset = grid
        n, length = self.layout.n_tiles(grid), self.layout.chunk_len(grid)
        first_start = int(self.tiling.tile_bounds(layer, offset, 0)[0])
        attrs = {"chrom": self.genome.names[chrom], "layer": layer, "offset": offset,
                 "tile_size": self.tiling.sizes[layer], "first_start": first_start}
        # raw: codecs [bytes] only, chunk files memory-mappable; zstd: Zarr's default (format 1)
        codec = {"compressors": None} if self.codec == "raw" else {}
        # filled first, then emb: whoever finds emb also finds its mask. A concurrent creator
        # (ContainsArrayError) made the same array from the same inputs: open that one.
        try:
            filled = group.create_array(filled_name, shape=(n,), chunks=(length,), dtype="bool", fill_value=False,
                                        attributes=attrs, **codec)
        except zarr.errors.ContainsArrayError:
            filled = group[filled_name]
        try:
            emb = group.create_array(emb_name, shape=(n, self.dim), chunks=(length, self.dim), dtype=self.dtype,
                                     fill_value=np.nan, attributes=attrs, **codec)
        except zarr.errors.ContainsArrayError:
            emb = group[emb_name]
        return emb, filled

    def refresh(self) -> None:
        """Forget listed arrays and resident chunks (to see what other processes wrote)."""
        self._group, self._listed = None, None
        self._arrays.clear()
        self._files.clear()
        self._cache.clear()

    def _grid_files(self, grid: Grid) -> tuple[_ArrayFiles, _ArrayFiles] | None:
        """How to read the grid's (emb, filled) chunk files, from their ``zarr.json``
        (no Zarr objects: opening them costs more than reading a chunk); None if the grid
        has no arrays (yet: remembered until ``refresh`` or a write to the grid)."""
        if grid not in self._files:
            emb_name, filled_name = self._names(grid)
            n, length = self.layout.n_tiles(grid), self.layout.chunk_len(grid)
            filled = _array_files(self.path / filled_name, "bool", (n,), (length,))
            emb = _array_files(self.path / emb_name, self.dtype, (n, self.dim), (length, self.dim))
            self._files[grid] = None if emb is None or filled is None else (emb, filled)
        return self._files[grid]

    def _load_chunk(self, ref: ChunkRef) -> np.ndarray | None:
        """The stored rows of a chunk, ``(chunk rows, dim)`` C-contiguous (rows past the
        grid's last tile, if any, are padding); None if the chunk is not completely
        filled, or cannot be used (then with a warning: it is recomputed)."""
        grid, chunk = ref
        files = self._grid_files(grid)
        if files is None:
            return None
        emb, filled = files
        t0, t1 = self.layout.tile_range(ref)
        try:
            # mask first: a writer writes data before mask, so data behind a set mask is complete
            if filled.kind == "zarr":
                if not np.asarray(self._zarr_arrays(grid)[1][t0:t1]).all():
                    return None
            else:
                mask = _read_chunk_bytes(filled, (chunk,), mmap_ok=False)
                if mask is None or not np.asarray(mask[: t1 - t0]).all():
                    return None
            if emb.kind == "zarr":
                block = np.ascontiguousarray(self._zarr_arrays(grid)[0][t0:t1])
                if np.isnan(block).any():
                    raise _Lost("is marked filled but holds NaN")
                return block
            data = _read_chunk_bytes(emb, (chunk, 0), mmap_ok=True)
            if data is None:
                raise _Lost("is marked filled but its data chunk file is missing")
            return np.frombuffer(data, dtype=self.dtype).reshape(-1, self.dim)
        except _Lost as e:
            # a mask without data (a lost chunk file): treat as missing, it is recomputed
            warnings.warn(f"tile memo {self._label(ref)} {e}; recomputing it", stacklevel=4)
        except Exception as e:
            # the memo holds nothing that cannot be recomputed: an unreadable chunk is rewritten
            warnings.warn(f"tile memo {self._label(ref)} unreadable ({type(e).__name__}: {e}); recomputing it",
                          stacklevel=4)
        return None

    def _zarr_arrays(self, grid: Grid):
        """(emb, filled) Zarr arrays of a grid whose files exist (listing again once if
        they were created after this object listed the group)."""
        arrays = self._grid_arrays(grid, create=False)
        if arrays is None:
            self._group, self._listed = None, None
            arrays = self._grid_arrays(grid, create=False)
        if arrays is None:
            raise GidxError(f"arrays of {self._names(grid)[0]} not found")
        return arrays

    def _label(self, ref: ChunkRef) -> str:
        (chrom, layer, offset), chunk = ref
        return f"{self.genome.names[chrom]} layer {layer} offset {offset} chunk {chunk}"

    def _write_chunk(self, ref: ChunkRef, rows: np.ndarray) -> np.ndarray:
        grid, _ = ref
        t0, t1 = self.layout.tile_range(ref)
        if rows.shape != (t1 - t0, self.dim):
            raise GidxError(f"encoder returned {rows.shape} for a chunk of {t1 - t0} tiles of dim {self.dim}")
        emb, filled = self._grid_arrays(grid, create=True)
        block = np.ascontiguousarray(rows, dtype=self.dtype)
        emb[t0:t1] = block  # data first ...
        filled[t0:t1] = True  # ... then the mask (see module docstring)
        if self._files.get(grid, False) is None:
            del self._files[grid]  # the grid has arrays now
        self.stats.chunks_computed += 1
        self.stats.tiles_computed += t1 - t0
        return block

    def _pipeline(self, workers: int | None = None) -> Pipeline:
        enc = self.encoder
        return Pipeline(preprocess=self._sequences, collate=enc.collate, forward=enc.forward,
                        decollate=enc.decollate, batch_size=self.batch_size,
                        workers=self.workers if workers is None else workers,
                        forward_in_workers=bool(getattr(enc, "forward_in_workers", False)),
                        worker_init=self._sequences.reopen)

    def _filled_chunks(self, grid: Grid) -> set[int]:
        """Chunk numbers of a grid whose tiles are all filled (reads the mask only)."""
        arrays = self._grid_arrays(grid, create=False)
        if arrays is None:
            return set()
        mask = arrays[1][:]
        length = self.layout.chunk_len(grid)
        n_chunks = -(-len(mask) // length)
        padded = np.ones(n_chunks * length, dtype=bool)
        padded[: len(mask)] = mask
        return set(np.flatnonzero(padded.reshape(n_chunks, length).all(axis=1)).tolist())

    # ---- lookups ----------------------------------------------------------

    def get(self, keys: TileKeys, progress: Callable | None = None) -> np.ndarray:
        """Embeddings of ``keys`` (as from ``TileAssignment.unique_tiles``: sorted by
        chrom, layer, offset, index), ``(len(keys), dim)`` float32. Missing tiles are
        computed now, a whole chunk at a time, and stored."""
        from .embed import gather_rows  # the compiled kernels live with the other numba code

        return gather_rows(self.rows(keys, progress, sorted_keys=True))

    def rows(self, tiles: TileKeys | TileAssignment, progress: Callable | None = None, *,
             sorted_keys: bool = False) -> TileRows:
        """Where the rows of ``tiles`` lie in memory, one address per tile, without
        copying them; missing tiles are computed first, as in ``get``. ``tiles`` is
        anything with ``chrom``, ``layer``, ``offset``, ``index`` arrays (``TileKeys``,
        or a whole ``TileAssignment``: any order, repeats allowed, no sorting needed);
        ``sorted_keys=True`` insists on ``get``'s sort order."""
        n = len(tiles.index)
        self.stats.tiles_requested += n
        if n == 0:
            return TileRows(np.zeros(0, dtype=np.int64), self.dim, self.dtype, [])
        chunk_id, local = self._chunk_ids(tiles)
        if sorted_keys and np.any(chunk_id[1:] < chunk_id[:-1]):
            raise GidxError("tile keys must be sorted by (chrom, layer, offset, index)")
        cache = self._cache
        ids = self._distinct(chunk_id)
        entries = cache.entry_of[ids]
        hit = entries >= 0
        cache.touch(entries[hit])
        address = np.zeros(len(ids), dtype=np.int64)
        address[hit] = cache.address[entries[hit]]
        self.stats.chunks_cached += int(hit.sum())
        keep: list = [cache.snapshot()]  # loading below may evict chunks this lookup uses
        computed = np.zeros(len(ids), dtype=bool)
        if not hit.all():
            miss = np.flatnonzero(~hit)
            missing: dict[ChunkRef, int] = {}
            for pos, ref in zip(miss.tolist(), self._chunk_refs(ids[miss])):
                block = self._load_chunk(ref)
                if block is None:
                    missing[ref] = pos
                    continue
                self.stats.chunks_read += 1
                address[pos] = cache.insert(int(ids[pos]), ref[0][1], block)
                keep.append(block)

            def store(ref: ChunkRef, rows: np.ndarray) -> None:
                block = self._write_chunk(ref, rows)
                pos = missing[ref]
                address[pos] = cache.insert(int(ids[pos]), ref[0][1], block)
                keep.append(block)

            if missing:
                self._pipeline().run(list(missing), write=store, progress=progress)
                computed[list(missing.values())] = True
        # position of each tile's chunk in ids, through a scratch table over all chunk ids
        position = self._position
        position[ids] = np.arange(len(ids))
        of_tile = position[chunk_id]
        self.stats.tiles_read += int(n - np.count_nonzero(computed[of_tile])) if computed.any() else n
        return TileRows(address[of_tile] + local * self._row_bytes, self.dim, self.dtype, keep)

    def _distinct(self, chunk_id: np.ndarray) -> np.ndarray:
        """Sorted distinct chunk ids: a mark per chunk of the genome when there are many
        lookups (no sort), ``np.unique`` when few."""
        if len(chunk_id) * 8 < len(self._position):
            return np.unique(chunk_id)
        mark = np.zeros(len(self._position), dtype=bool)
        mark[chunk_id] = True
        return np.flatnonzero(mark)

    def _chunk_refs(self, ids: np.ndarray) -> list[ChunkRef]:
        """(grid, chunk) of genome-wide chunk ids."""
        _, _, first_chunk = self.layout.tables()
        # the last grid whose first chunk id is <= id (grids without chunks share their
        # successor's first id and sort before it)
        grid = np.searchsorted(first_chunk, ids, side="right") - 1
        chunk = ids - first_chunk[grid]
        per_chrom = self.tiling.layers * self.tiling.offsets
        chrom, rest = np.divmod(grid, per_chrom)
        layer, offset = np.divmod(rest, self.tiling.offsets)
        return [((c, k, o), i) for c, k, o, i in zip(chrom.tolist(), layer.tolist(), offset.tolist(), chunk.tolist())]

    def _chunk_ids(self, tiles) -> tuple[np.ndarray, np.ndarray]:
        """(genome-wide chunk id, row within the chunk) of every tile; raises on tiles
        outside the memo's genome or tiling."""
        chrom, layer, offset = tiles.chrom, tiles.layer, tiles.offset
        index = np.asarray(tiles.index, dtype=np.int64)
        if chrom.min() < 0 or chrom.max() >= len(self.genome.names):
            raise GidxError("tile keys refer to chromosomes outside the memo's genome")
        if layer.min() < 0 or layer.max() >= self.tiling.layers or offset.min() < 0 \
                or offset.max() >= self.tiling.offsets:
            raise GidxError("tile keys refer to layers/offsets outside the memo's tiling")
        n_tiles, chunk_len, first_chunk = self.layout.tables()
        grid = self.layout.grid_number(chrom, layer, offset)
        if index.min() < 0 or np.any(index >= n_tiles[grid]):
            raise GidxError("tile keys refer to tiles outside their chromosome")
        length = chunk_len[grid]
        chunk = index // length
        return first_chunk[grid] + chunk, index - chunk * length

    # ---- bulk -------------------------------------------------------------

    def grids(self, chroms: list[int] | None = None) -> list[Grid]:
        codes = range(len(self.genome.names)) if chroms is None else chroms
        return [(c, layer, offset) for c in codes for layer in range(self.tiling.layers)
                for offset in range(self.tiling.offsets) if self.layout.n_tiles((c, layer, offset)) > 0]

    def chunk_refs(self, grid: Grid) -> list[ChunkRef]:
        return [(grid, c) for c in range(self.layout.n_chunks(grid))]

    def _chrom_codes(self, chroms: list[str]) -> list[int]:
        unknown = [c for c in chroms if c not in self.genome.code_of]
        if unknown:
            raise GidxError(f"chromosome(s) not in genome {self.genome.name}: {', '.join(unknown)}")
        return sorted({self.genome.code_of[c] for c in chroms})

    def fill(self, chroms: list[str] | None = None, all: bool = False, progress: Callable | None = None,
             workers: int | None = None) -> FillReport:
        """Precompute every tile of the given chromosomes (or, with ``all=True``, of the
        whole genome). Resumable: chunks already filled are skipped, so rerunning after a
        crash computes only the rest. ``progress(done, total, label)`` per chunk written."""
        if chroms is None and not all:
            raise GidxError("give the chromosomes to fill, or all=True for the whole genome")
        codes = None if all else self._chrom_codes(list(chroms))
        refs = [ref for grid in self.grids(codes) for ref in self.chunk_refs(grid)]
        t0 = time.perf_counter()
        before = self.stats.tiles_computed
        filled = {grid: self._filled_chunks(grid) for grid in {grid for grid, _ in refs}}

        def report(i: int, total: int, ref: ChunkRef) -> None:
            if progress is not None:
                progress(i, total, self._label(ref))

        # what a bulk fill writes is not cached: it would only evict what lookups use
        stats = self._pipeline(workers).run(refs, write=self._write_chunk,
                                            is_done=lambda ref: ref[1] in filled[ref[0]], progress=report)
        return FillReport(len(refs), stats.skipped, stats.items, self.stats.tiles_computed - before,
                          time.perf_counter() - t0)

    # ---- inspection -------------------------------------------------------

    def info(self) -> dict:
        """Address, inputs, filled fraction per layer, bytes on disk."""
        self.refresh()
        layers = []
        filled_total = tiles_total = 0
        for layer, size in enumerate(self.tiling.sizes):
            n_all = n_filled = 0
            for grid in self.grids():
                if grid[1] != layer:
                    continue
                n = self.layout.n_tiles(grid)
                n_all += n
                arrays = self._grid_arrays(grid, create=False)
                if arrays is not None:
                    n_filled += int(np.count_nonzero(arrays[1][:]))
            layers.append({"layer": layer, "tile_size": size, "tiles": n_all, "filled": n_filled,
                           "fraction": n_filled / n_all if n_all else 0.0})
            filled_total += n_filled
            tiles_total += n_all
        return {"address": self.address, "path": str(self.path), "exists": (self.path / "zarr.json").is_file(),
                "inputs": self.inputs, "dim": self.dim, "dtype": self.dtype, "chunk_bp": self.chunk_bp,
                "format": self.format, "codec": self.codec,
                "layers": layers,
                "tiles": tiles_total, "filled": filled_total,
                "fraction": filled_total / tiles_total if tiles_total else 0.0,
                "genome_bp": self.genome.total_bp, "bytes_on_disk": _du(self.path)}

    def verify(self, sample: int = 256, seed: int = 0, repair: bool = False) -> dict:
        """Spot-check: recompute ``sample`` filled tiles (drawn at random over all filled
        tiles) and compare with what is stored. A chunk is *bad* when a sampled tile
        differs beyond float tolerance, holds NaN although marked filled, or cannot be
        read. ``repair=True`` recomputes the bad chunks: their masks are cleared first
        (so an interrupted repair leaves them missing, not wrong), then each is rewritten
        like any fill (data, then mask)."""
        self.refresh()
        tolerance = {"float32": 1e-4, "float16": 4e-3}[self.dtype]
        rng = np.random.default_rng(seed)
        candidates: list[tuple[Grid, np.ndarray]] = []
        for grid in self.grids():
            arrays = self._grid_arrays(grid, create=False)
            if arrays is not None:
                idx = np.flatnonzero(arrays[1][:])
                if len(idx):
                    candidates.append((grid, idx))
        counts = np.array([len(idx) for _, idx in candidates], dtype=np.int64)
        total = int(counts.sum())
        picks = np.sort(rng.choice(total, size=min(sample, total), replace=False)) if total else np.zeros(0, int)
        owner = np.searchsorted(np.cumsum(counts), picks, side="right")
        bad: list[dict] = []
        bad_chunks: set[ChunkRef] = set()
        checked = 0
        for g in np.unique(owner):
            grid, idx = candidates[g]
            tiles = idx[picks[owner == g] - (np.cumsum(counts)[g] - counts[g])]
            chrom, layer, offset = grid
            starts, ends = self.tiling.tile_bounds(layer, offset, tiles)
            expected = self.encoder.embed(self.genome.fetch(np.full(len(tiles), chrom), starts, ends))
            emb, _ = self._grid_arrays(grid, create=False)
            chunk_of = tiles // self.layout.chunk_len(grid)
            for c in np.unique(chunk_of).tolist():
                ref = (grid, c)
                t0, t1 = self.layout.tile_range(ref)
                mine = chunk_of == c
                checked += int(mine.sum())
                try:
                    got = np.asarray(emb[t0:t1], dtype=np.float32)[tiles[mine] - t0]
                except Exception as e:  # an unreadable (corrupted) chunk file
                    problems = {int(t): f"unreadable: {type(e).__name__}: {e}" for t in tiles[mine]}
                else:
                    diff = np.abs(got - expected[mine]).max(axis=1)
                    problems = {int(t): "marked filled but holds NaN" if np.isnan(row).any()
                                else f"differs from recomputed by {d:.3g}"
                                for t, row, d in zip(tiles[mine], got, diff)
                                if np.isnan(row).any() or d > tolerance}
                for tile, reason in problems.items():
                    bad.append({"chrom": self.genome.names[chrom], "layer": layer, "offset": offset, "tile": tile,
                                "reason": reason})
                    bad_chunks.add(ref)
        if repair and bad_chunks:
            refs = sorted(bad_chunks)
            for ref in refs:
                t0, t1 = self.layout.tile_range(ref)
                self._grid_arrays(ref[0], create=False)[1][t0:t1] = False
            self.refresh()
            self._pipeline().run(refs, write=self._write_chunk)
        return {"address": self.address, "checked": checked, "bad_tiles": bad, "bad_chunks": len(bad_chunks),
                "repaired": len(bad_chunks) if repair else 0, "ok": not bad}


def _du(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:  # a chunk replaced while we walk
                pass
    return total


class _Lost(Exception):
    """A chunk marked filled whose data is not there."""


def _stored_codec(attrs: dict) -> str:
    return attrs.get("chunk_codec", "zstd")  # format 1 had no attribute: Zarr's default zstd


def _check_format(attrs: dict, path: Path) -> int:
    """The format of an existing memo group; raises on one this gidx cannot read."""
    fmt = attrs.get("gidx_tile_memo")
    if isinstance(fmt, bool) or fmt not in READABLE_FORMATS or _stored_codec(attrs) not in CODECS:
        raise GidxError(
            f"tile memo {path} has format {fmt!r} (chunk codec {_stored_codec(attrs)!r}), which this gidx does not "
            f"read (formats {', '.join(map(str, READABLE_FORMATS))}): use the gidx that wrote it, or move the "
            "folder away to have the memo rebuilt")
    return int(fmt)


def _open_or_create_group(path: Path, attributes: dict | None = None):
    """Open a Zarr group, creating it (with ``attributes``) if needed. Two processes may
    create it at once; the loser's ContainsGroupError means it exists now: open it."""
    import zarr

    try:
        return zarr.open_group(path, mode="a", attributes=attributes)
    except zarr.errors.ContainsGroupError:
        return zarr.open_group(path, mode="a")


def encoder_from_identity(identity: dict):
    """Rebuild an encoder from the identity stored with a memo, where that identity is
    all it takes (kmer: parameters only); None otherwise (a model needs its weights)."""
    if identity.get("name") != "kmer":
        return None
    from .encoders.kmer import KmerEncoder

    try:
        encoder = KmerEncoder(identity["k"], identity["dim"], identity["seed"], identity["canonical"])
    except (KeyError, GidxError):
        return None
    return encoder if encoder.identity() == identity else None


def verify_index_memos(index, samples: int = 64, repair: bool = False) -> list[str]:
    """``gidx check`` on every tile memo of an index (``<index>/tiles.zarr/<address>``)
    built for the index's genome whose encoder can be rebuilt from its stored identity.
    Returns one line per problem, plus ``refilled ...`` lines for repairs."""
    root = Path(index.path) / "tiles.zarr"
    if not root.is_dir():
        return []
    genome = index.genome
    lines: list[str] = []
    for folder in sorted(p for p in root.iterdir() if (p / "zarr.json").is_file()):
        attrs = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
        inputs = attrs.get("inputs")
        if not attrs.get("gidx_tile_memo") or not inputs or inputs.get("genome") != genome.digest:
            continue  # not a memo, or one for another genome: nothing this index can check
        encoder = encoder_from_identity(inputs["encoder"])
        params = inputs["tiling"]
        try:
            tiling = Tiling(params["base"], params["layers"], params["offsets"])
        except (KeyError, ValueError):
            tiling = None
        if encoder is None or tiling is None or tiling.params() != params:
            continue  # cannot recompute its tiles here (a model's weights, another tiling scheme)
        name = folder.name[:12]
        try:
            memo = TileMemo(root, genome, tiling, encoder, inputs["dtype"])
        except GidxError as e:  # e.g. a format this gidx does not read
            lines.append(f"tile memo {name}: {e}")
            continue
        if memo.address != folder.name:
            lines.append(f"tile memo {name}: stored inputs hash to another address ({memo.address[:12]})")
            continue
        report = memo.verify(sample=samples, repair=repair)
        for bad in report["bad_tiles"][:5]:
            lines.append(f"tile memo {name}: {bad['chrom']} layer {bad['layer']} offset {bad['offset']} "
                         f"tile {bad['tile']}: {bad['reason']}")
        if len(report["bad_tiles"]) > 5:
            lines.append(f"tile memo {name}: ... {len(report['bad_tiles']) - 5} more bad tiles")
        if report["repaired"]:
            lines.append(f"refilled {report['repaired']} chunk(s) of tile memo {name}")
    return lines
