"""The kmer sequence encoder and the encoder registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gidx.encoders import SequenceEncoder, load_encoder
from gidx.encoders.kmer import KmerEncoder, splitmix64
from gidx.errors import GidxError

COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


def revcomp(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def random_dna(rng, n: int, alphabet: str = "ACGT") -> str:
    return "".join(rng.choice(list(alphabet), n))


def reference_embedding(seq: str, enc: KmerEncoder) -> np.ndarray:
    """The module docstring's definition, one k-mer at a time."""
    counts = np.zeros(enc.dim)
    s = seq.upper()
    for i in range(len(s) - enc.k + 1):
        word = s[i : i + enc.k]
        if any(c not in "ACGT" for c in word):
            continue
        code = int("".join(str("ACGT".index(c)) for c in word), 4)
        rc = int("".join(str("ACGT".index(c)) for c in revcomp(word)), 4)
        kmer = min(code, rc) if enc.canonical else code
        h = int(splitmix64(np.array([kmer], dtype=np.uint64) ^ enc._hash_key)[0])
        counts[h % enc.dim] += -1 if h >> 63 else 1
    norm = np.linalg.norm(counts)
    return counts / norm if norm else counts


@pytest.mark.parametrize("k", [1, 4, 7, 12, 16, 17, 31])
@pytest.mark.parametrize("canonical", [True, False])
def test_matches_reference_definition(k, canonical):
    rng = np.random.default_rng(k)
    enc = KmerEncoder(k=k, dim=32, seed=5, canonical=canonical)
    seqs = [random_dna(rng, int(rng.integers(0, 90)), "ACGTNacgtnRY") for _ in range(25)]
    expected = np.array([reference_embedding(s, enc) for s in seqs])
    np.testing.assert_allclose(enc.embed(seqs), expected, atol=1e-6)


def test_case_insensitive_and_non_bases_skipped():
    rng = np.random.default_rng(1)
    enc = KmerEncoder()
    left, right = random_dna(rng, 300), random_dna(rng, 200)
    a = enc.embed([left + right, (left + right).lower(), left + "N" + right, left + "NNNNNNN" + right,
                   left + "R" + right, left.lower() + "n" + right])
    np.testing.assert_array_equal(a[0], a[1])
    # any run of non-bases removes exactly the k-mers that span it
    for row in a[3:]:
        np.testing.assert_array_equal(row, a[2])
    assert not np.array_equal(a[0], a[2])


def test_no_valid_kmer_gives_zero_vector():
    enc = KmerEncoder(k=12, dim=64)
    out = enc.embed(["", "ACGTACGTACG", "N" * 50, "ACGTNACGTNACGTNACGTN"])
    np.testing.assert_array_equal(out, 0)
    assert out.dtype == np.float32 and out.shape == (4, 64)
    assert enc.embed([]).shape == (0, 64)


def test_reverse_complement_invariant_when_canonical():
    rng = np.random.default_rng(2)
    seqs = [random_dna(rng, n) for n in (12, 50, 500, 5000)]
    canonical, stranded = KmerEncoder(), KmerEncoder(canonical=False)
    np.testing.assert_allclose(canonical.embed(seqs), canonical.embed([revcomp(s) for s in seqs]), atol=1e-7)
    assert not np.allclose(stranded.embed(seqs[-1:]), stranded.embed([revcomp(seqs[-1])]))


def test_unit_norm_deterministic_and_seeded():
    rng = np.random.default_rng(3)
    seqs = [random_dna(rng, int(n)) for n in rng.integers(20, 3000, 40)]
    a = KmerEncoder().embed(seqs)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(a, KmerEncoder().embed(seqs))
    assert KmerEncoder().identity() == KmerEncoder().identity()
    other = KmerEncoder(seed=1)
    assert other.identity() != KmerEncoder().identity()
    assert not np.allclose(other.embed(seqs), a)


def test_batch_invariant_across_blocks():
    """Rows do not depend on the batch: single sequences, reordered batches, and batches
    whose sequences straddle the encoder's internal blocks all agree."""
    rng = np.random.default_rng(4)
    enc = KmerEncoder()
    lengths = [5, 100, KmerEncoder.BLOCK + 37, 3, 2 * KmerEncoder.BLOCK - 5, 700, 0, 12, 13]
    seqs = [random_dna(rng, n, "ACGTTN") for n in lengths]
    together = enc.embed(seqs)
    singles = np.concatenate([enc.embed([s]) for s in seqs])
    np.testing.assert_array_equal(together, singles)
    order = rng.permutation(len(seqs))
    np.testing.assert_array_equal(enc.embed([seqs[i] for i in order]), together[order])


def test_pipeline_stages_equal_embed():
    rng = np.random.default_rng(5)
    enc = KmerEncoder(k=8, dim=64)
    seqs = [random_dna(rng, n) for n in (10, 200, 1000)]
    batch = enc.collate(seqs)
    np.testing.assert_array_equal(enc.decollate(enc.forward(batch), batch), enc.embed(seqs))
    assert isinstance(enc, SequenceEncoder)


def test_load_encoder_specs():
    assert load_encoder("kmer").identity() == KmerEncoder().identity()
    enc = load_encoder("kmer:k=8,dim=64,seed=2,canonical=false")
    assert (enc.k, enc.dim, enc.seed, enc.canonical) == (8, 64, 2, False)
    assert load_encoder("kmer:k=8", dim=32).dim == 32
    for bad in ("kmer:k=x", "kmer:q=3", "kmer:k=40", "kmer:dim=0", "word2vec", "hyenadna:/nonexistent/folder"):
        with pytest.raises(GidxError):
            load_encoder(bad)


def test_kmer_path_never_imports_torch(tmp_path):
    """Encoding, the pipeline (workers=0), the memo and interval embeddings stay torch-free."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from gidx.encoders import load_encoder
        from gidx.genome import Genome
        from gidx.tiling import Tiling
        from gidx.memo import TileMemo
        from gidx.embed import interval_embeddings
        from gidx.intervals import IntervalSet
        sizes = {str(tmp_path / "g.sizes")!r}
        open(sizes, "w").write("c1\\t20000\\n")
        g = Genome.from_chrom_sizes(sizes)
        memo = TileMemo({str(tmp_path / "memo")!r}, g, Tiling(), load_encoder("kmer:dim=16"))
        iv = IntervalSet.from_tuples([("c1", 100, 900), ("c1", 5000, 5100)])
        for mode in ("tiles", "direct"):
            assert interval_embeddings(iv, g, Tiling(), memo, mode=mode).shape == (2, 16)
        assert "torch" not in sys.modules, "torch was imported"
    """)
    subprocess.run([sys.executable, "-c", script], check=True)


def test_throughput_is_not_pathological():
    """A loose floor (the benchmark measures properly): >= 2 Mbp/s even on a busy CI core."""
    import time

    rng = np.random.default_rng(6)
    seqs = [random_dna(rng, 1000) for _ in range(500)]
    enc = KmerEncoder()
    enc.embed(seqs)
    t0 = time.perf_counter()
    enc.embed(seqs)
    assert 500_000 / (time.perf_counter() - t0) > 2e6
