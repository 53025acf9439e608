"""Fuzzed BED input: every generated file is either read exactly as an independent
oracle reads it, or rejected with a one-line error naming the file; a rejected
file never changes the index. The generator and oracle live in
benchmarks/fuzz_bed.py (which runs the 10,000-case tally for RESULTS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO

_spec = importlib.util.spec_from_file_location("fuzz_bed", REPO / "benchmarks" / "fuzz_bed.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def fuzz_genome(tmp_path_factory):
    return fuzz.chrom_sizes_genome(tmp_path_factory.mktemp("fuzzgenome"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False))
def test_reader_agrees_with_oracle_or_rejects_cleanly(rng, fuzz_genome, tmp_path):
    data, mutation = fuzz.make_case(rng)
    verdict = fuzz.judge(tmp_path / "case.bed", data, fuzz_genome[0])
    assert not verdict.startswith("FAIL"), (mutation, verdict, data[:300])


def test_every_mutation_kind_is_exercised():
    tally, failures = fuzz.run(cases=len(fuzz.MUTATIONS) * 12, seed=1)
    assert not failures
    assert {m for m, _ in tally} == set(fuzz.MUTATIONS)
    verdicts = {v for _, v in tally}
    assert verdicts == {"ok", "rejected"}


def test_rejected_files_leave_the_index_unchanged():
    tally, failures = fuzz.run(cases=60, seed=2, ingest=True)
    assert not failures
    assert sum(n for (_, v), n in tally.items() if v == "rejected") > 10
