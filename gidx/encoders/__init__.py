"""Sequence encoders: DNA string -> fixed-size vector, and the registry that builds them.

Every encoder satisfies :class:`SequenceEncoder`. Two ways to use one:

* ``embed(seqs)`` -- a list of strings in, ``(len(seqs), dim)`` float32 out, rows in
  input order;
* the three pipeline stages, which :mod:`gidx.pipeline` runs in a streaming fashion:
  ``collate(seqs) -> batch`` (tokenise, pad; cheap, runs where the data is prepared),
  ``forward(batch) -> hidden`` (the model), ``decollate(hidden, batch) -> (B, dim)``
  numpy rows. ``decollate(forward(collate(s)), collate(s))`` equals ``embed(s)``.

``identity()`` returns a JSON-ready dict of everything that determines the vectors
(name, parameters, weights hash); it goes into the tile memo's content address, so two
encoders with equal identities must give equal vectors. ``max_len`` is the most bases
one sequence may have (``gidx.encoders.kmer.UNLIMITED_LENGTH`` where there is no limit).

An encoder may set ``forward_in_workers = True`` when ``forward`` is plain CPU work that
is cheap to ship to worker processes (kmer); the pipeline then runs the model in its
workers. Torch encoders leave it unset: the model stays in the main process, on its device.

Specs (``load_encoder``): ``"kmer"``, ``"kmer:k=12,dim=256,seed=0,canonical=true"``,
``"hyenadna:/path/to/checkpoint"`` (a local folder with ``config.json`` and
``model.safetensors``). torch is imported only for ``hyenadna``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import GidxError

__all__ = ["SequenceEncoder", "load_encoder", "ENCODER_NAMES"]

ENCODER_NAMES = ("kmer", "hyenadna")


@runtime_checkable
class SequenceEncoder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    @property
    def max_len(self) -> int: ...

    def identity(self) -> dict: ...

    def embed(self, seqs: list[str]) -> np.ndarray: ...

    def collate(self, seqs: list[str]) -> Any: ...

    def forward(self, batch: Any) -> Any: ...

    def decollate(self, hidden: Any, batch: Any) -> np.ndarray: ...


def _parse_kmer_options(text: str) -> dict:
    types = {"k": int, "dim": int, "seed": int, "canonical": bool}
    opts: dict = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in types:
            raise GidxError(f"kmer encoder option {item!r}: expected one of {', '.join(f'{k}=...' for k in types)}")
        if types[key] is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise GidxError(f"kmer encoder option {key}={value!r}: expected true or false")
            opts[key] = value.lower() in ("true", "1", "yes")
        else:
            try:
                opts[key] = int(value)
            except ValueError:
                raise GidxError(f"kmer encoder option {key}={value!r}: expected an integer") from None
    return opts


def load_encoder(spec: str, **opts) -> SequenceEncoder:
    """Build an encoder from a spec string (see module docstring); ``opts`` are passed to
    its constructor and win over options in the spec (e.g. ``device="cuda"`` for hyenadna)."""
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "kmer":
        from .kmer import KmerEncoder

        return KmerEncoder(**{**_parse_kmer_options(arg), **opts})
    if name == "hyenadna":
        from pathlib import Path

        folder = Path(arg).expanduser()
        if not arg or not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise GidxError(f"encoder {spec!r}: expected hyenadna:FOLDER with config.json and model.safetensors")
        from .hyenadna import HyenaDNAEncoder  # imports torch

        return HyenaDNAEncoder(folder, **opts)
    raise GidxError(f"unknown encoder {spec!r}; expected one of: {', '.join(ENCODER_NAMES)} (e.g. 'kmer:k=12,dim=256')")
