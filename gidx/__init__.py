"""gidx: a persistent similarity index over sets of genomic intervals.

>>> import gidx
>>> idx = gidx.Index.create("idx", chrom_sizes="hg19.chrom.sizes")
>>> idx.ingest(["roadmap/"])
>>> idx.query("q.bed", k=20)          # a pyarrow Table

Heavy dependencies (LanceDB, torch, Alembic) are imported only where used.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Index", "GidxError", "InputError", "IntervalSet", "read_bed", "__version__"]


def migrations_path() -> Path:
    """Folder of the Alembic scripts (``migrations/`` in the source tree, ``gidx/migrations`` in the wheel)."""
    from . import migrations  # noqa: F401  (mapped package, see pyproject)

    return Path(migrations.__file__).parent


def __getattr__(name: str):
    if name == "Index":
        from .index import Index

        return Index
    if name in ("GidxError", "InputError"):
        from . import errors

        return getattr(errors, name)
    if name == "IntervalSet":
        from .intervals import IntervalSet

        return IntervalSet
    if name == "read_bed":
        from .bed import read_bed

        return read_bed
    raise AttributeError(name)
