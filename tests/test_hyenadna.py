"""gidx's HyenaDNA against the upstream reference outputs in tests/data/hyenadna/.

The fixtures (random seeded weights in the LongSafari checkpoint layout, outputs of the
upstream remote code) are described in tests/data/hyenadna/README.md; tolerances are the
ones it recommends: float32 atol/rtol 1e-3 (a misloaded tensor moves outputs >= 2.2e-2),
float64 1e-8.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gidx.encoders import SequenceEncoder, hyenadna
from gidx.encoders.hyenadna import (
    HyenaDNAConfig,
    HyenaDNAEncoder,
    HyenaDNAError,
    HyenaDNAForCausalLM,
    HyenaDNAModel,
    HyenaDNATokenizer,
    fft_length,
    gelu_tanh,
)
from gidx.errors import GidxError

DATA = Path(__file__).resolve().parent / "data" / "hyenadna"
FIXTURES = ["micro-random", "tiny-random"]
F32 = dict(atol=1e-3, rtol=1e-3)
F64 = dict(atol=1e-8, rtol=1e-8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: on a shared 2-vCPU runner two OpenMP threads only wait for
    each other (5-10x slower under load). Restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Fixture:
    def __init__(self, name: str):
        self.folder = DATA / name
        self.inputs = json.loads((self.folder / "inputs.json").read_text())
        self.cases = self.inputs["cases"]
        self.npz = {k: np.load(self.folder / f"{k}.npz")
                    for k in ("expected_f32", "expected_f64", "expected_batch_f32", "expected_layers_f32")}
        self.lm32 = HyenaDNAForCausalLM.from_pretrained(self.folder)
        self.lm64 = HyenaDNAForCausalLM.from_pretrained(self.folder, dtype=torch.float64)


@pytest.fixture(scope="module", params=FIXTURES)
def fx(request) -> Fixture:
    return Fixture(request.param)


def run(model, ids, **kw):
    with torch.inference_mode():
        return model(torch.as_tensor(ids).reshape(1, -1) if np.ndim(ids) == 1 else torch.as_tensor(ids), **kw)


def test_fixture_copies_are_intact(fx):
    for name, digest in fx.inputs["files_sha256"].items():
        assert hashlib.sha256((fx.folder / name).read_bytes()).hexdigest() == digest, name


def test_token_ids_match_reference(fx):
    tok = HyenaDNATokenizer.from_pretrained(fx.folder)
    assert tok.model_max_length == fx.inputs["model"]["max_seq_len"]
    for case in fx.cases:
        assert tok(case["sequence"])["input_ids"] == case["input_ids"], case["name"]
        assert tok(case["sequence"], add_special_tokens=False)["input_ids"] == case["input_ids_no_special_tokens"]
    assert tok("acgtN")["input_ids"] == [6, 6, 6, 6, 11, 1]  # README example: case-sensitive


def test_tokenizer_batch_padding_and_upper():
    tok = HyenaDNATokenizer(model_max_length=6)
    out = tok(["ACG", "T"], padding=True)
    assert out == {"input_ids": [[7, 8, 9, 1], [10, 1, 4, 4]], "attention_mask": [[1, 1, 1, 1], [1, 1, 0, 0]]}
    assert tok(["ACG", "T"]) == {"input_ids": [[7, 8, 9, 1], [10, 1]]}  # no mask unless padding
    pt = tok("ACG", return_tensors="pt", padding="max_length")
    assert pt["input_ids"].tolist() == [[7, 8, 9, 1, 4, 4]] and pt["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0]]
    assert tok("ACGTACGT", truncation=True)["input_ids"] == [7, 8, 9, 10, 7, 1]  # [SEP] kept
    assert HyenaDNATokenizer(padding_side="left")(["ACG", "T"], padding=True)["input_ids"][1] == [4, 4, 10, 1]
    upper = HyenaDNATokenizer(upper=True)
    assert upper("acgtnrACGTN")["input_ids"] == [7, 8, 9, 10, 11, 6, 7, 8, 9, 10, 11, 1]
    assert upper("Aé")["input_ids"] == [7, 6, 1]  # one id per character, also non-ASCII


def test_last_hidden_state_and_logits_float32(fx):
    for case in fx.cases:
        out = run(fx.lm32, case["input_ids"])
        for ref in ("expected_f32", "expected_f64"):
            np.testing.assert_allclose(out.last_hidden_state[0], fx.npz[ref][f"hidden__{case['name']}"], **F32)
            np.testing.assert_allclose(out.logits[0], fx.npz[ref][f"logits__{case['name']}"], **F32)


def test_last_hidden_state_and_logits_float64(fx):
    for case in fx.cases:
        out = run(fx.lm64, case["input_ids"])
        assert out.last_hidden_state.dtype == torch.float64
        np.testing.assert_allclose(out.last_hidden_state[0], fx.npz["expected_f64"][f"hidden__{case['name']}"], **F64)
        np.testing.assert_allclose(out.logits[0], fx.npz["expected_f64"][f"logits__{case['name']}"], **F64)


def test_intermediates(fx):
    """Piece by piece, so a failure says which stage diverges."""
    layers = fx.npz["expected_layers_f32"]
    case = next(c for c in fx.cases if c["name"] == str(layers["_case"]))
    out = run(fx.lm32, case["input_ids"], output_hidden_states=True)
    assert len(out.hidden_states) == fx.lm32.config.n_layer + 2
    for i, h in enumerate(out.hidden_states):
        np.testing.assert_allclose(h[0], layers[f"hidden_states_{i}"], **F32, err_msg=f"hidden_states_{i}")
    L = len(case["input_ids"])
    block = fx.lm32.hyena.backbone.layers[0]
    with torch.inference_mode():
        u = block.norm1(out.hidden_states[0])
        short = block.mixer.projections(u)[0, :, :L]
        k, mixer_out = block.mixer.filter_fn.filter(L), block.mixer(u)[0]
    np.testing.assert_allclose(short, layers["layer0_short_conv_out"], **F32)
    np.testing.assert_allclose(k, layers["layer0_long_filter_k"], **F32)
    np.testing.assert_allclose(mixer_out, layers["layer0_mixer_out"], **F32)


def test_right_padding_is_safe_left_padding_leaks(fx):
    batch = fx.npz["expected_batch_f32"]
    names = list(batch["_case_names"])
    seqs = [next(c["sequence"] for c in fx.cases if c["name"] == n) for n in names]
    tok = HyenaDNATokenizer()
    right = tok(seqs, padding=True, return_tensors="np")
    np.testing.assert_array_equal(right["input_ids"], batch["input_ids_right"])
    np.testing.assert_array_equal(right["attention_mask"], batch["attention_mask_right"])
    hidden = run(fx.lm32, right["input_ids"]).last_hidden_state
    for row, (name, mask) in enumerate(zip(names, right["attention_mask"])):
        valid = hidden[row, mask.astype(bool)]
        np.testing.assert_allclose(valid, batch["hidden_right"][row, mask.astype(bool)], **F32)
        np.testing.assert_allclose(valid, fx.npz["expected_f64"][f"hidden__{name}"], **F32)
    # gidx reproduces the reference's left-padded run too, and it is far off the unpadded one
    left = HyenaDNATokenizer(padding_side="left")(seqs, padding=True, return_tensors="np")
    np.testing.assert_array_equal(left["input_ids"], batch["input_ids_left"])
    hidden = run(fx.lm32, left["input_ids"]).last_hidden_state
    np.testing.assert_allclose(hidden, batch["hidden_left"], **F32)
    short = left["attention_mask"][0].astype(bool)
    assert np.abs(hidden[0, short].numpy() - fx.npz["expected_f32"][f"hidden__{names[0]}"]).max() > 0.1


def test_backbone_alone_and_unprefixed_checkpoint(fx, tmp_path):
    """HyenaDNAModel skips lm_head; a checkpoint saved from HyenaDNAModel has no 'hyena.' prefix."""
    case = fx.cases[2]
    expected = fx.npz["expected_f32"][f"hidden__{case['name']}"]
    np.testing.assert_allclose(run(HyenaDNAModel.from_pretrained(fx.folder), case["input_ids"])
                               .last_hidden_state[0], expected, **F32)
    folder = copy_checkpoint(fx.folder, tmp_path, lambda t: {k.removeprefix("hyena."): v for k, v in t.items()
                                                              if k != "lm_head.weight"})
    np.testing.assert_allclose(run(HyenaDNAModel.from_pretrained(folder), case["input_ids"])
                               .last_hidden_state[0], expected, **F32)
    with pytest.raises(HyenaDNAError, match="missing: lm_head.weight"):
        HyenaDNAForCausalLM.from_pretrained(folder)


def copy_checkpoint(src: Path, dst: Path, edit) -> Path:
    folder = dst / "ckpt"
    folder.mkdir()
    shutil.copy(src / "config.json", folder)
    save_file(edit(load_file(src / "model.safetensors")), folder / "model.safetensors", metadata={"format": "pt"})
    return folder


FC2 = "hyena.backbone.layers.1.mlp.fc2.bias"
DELTAS = "hyena.backbone.layers.0.mixer.filter_fn.modulation.deltas"


@pytest.mark.parametrize("edit, names", [
    (lambda t: {k: v for k, v in t.items() if k != FC2}, ["missing", FC2]),
    (lambda t: {(k + "_renamed" if k == DELTAS else k): v for k, v in t.items()},
     ["missing", DELTAS, "unexpected", DELTAS + "_renamed"]),
    (lambda t: {k: (v[:, :, :-1] if k == DELTAS else v) for k, v in t.items()},
     ["wrong shape", DELTAS, "(1, 1, 31)", "(1, 1, 32)"]),
    (lambda t: {**t, "hyena.backbone.layers.0.mixer.filter_fn.implicit_filter.3.freq": torch.ones(1, 64)},
     ["unexpected", "implicit_filter.3.freq"]),
], ids=["missing", "renamed", "wrong-shape", "stored-alias"])
def test_bad_checkpoint_names_the_tensor(tmp_path, edit, names):
    folder = copy_checkpoint(DATA / "micro-random", tmp_path, edit)
    with pytest.raises(HyenaDNAError) as err:
        HyenaDNAModel.from_pretrained(folder)
    assert isinstance(err.value, GidxError) and isinstance(err.value, ValueError)
    message = str(err.value)
    for name in names:
        assert name in message
    assert message.index(names[0]) < message.index(names[1])


def test_config_ignores_unknown_keys_and_fills_defaults(tmp_path):
    cfg = HyenaDNAConfig.from_pretrained(DATA / "tiny-random")
    assert (cfg.d_model, cfg.n_layer, cfg.d_inner, cfg.max_seq_len, cfg.emb_dim, cfg.padded_vocab_size) \
        == (128, 2, 512, 1026, 5, 16)
    assert "auto_map" not in cfg.to_dict()
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 64, "some_new_hf_key": 1}))
    cfg = HyenaDNAConfig.from_pretrained(tmp_path)
    assert (cfg.d_inner, cfg.emb_dim, cfg.max_seq_len, cfg.n_layer, cfg.activation_freq) == (256, 3, 1024, 12, 1)
    with pytest.raises(HyenaDNAError, match="hyena_order=3"):
        HyenaDNAConfig(hyena_order=3)


def test_too_long_input_fails_clearly():
    model = HyenaDNAModel.from_pretrained(DATA / "micro-random")  # max_seq_len 258
    with pytest.raises(HyenaDNAError, match="259 tokens.*max_seq_len=258"):
        run(model, np.full(259, 7))
    enc = HyenaDNAEncoder(DATA / "micro-random")
    assert enc.max_len == 257
    assert enc.embed(["A" * 257]).shape == (1, 32)
    with pytest.raises(HyenaDNAError, match="1 sequence.*1..257 bases.*sequence 1 with 258 bases"):
        enc.embed(["ACGT", "A" * 258])
    with pytest.raises(HyenaDNAError, match="sequence 0 with 0 bases"):
        enc.embed([""])


@pytest.fixture(scope="module")
def encoder() -> HyenaDNAEncoder:
    return HyenaDNAEncoder(DATA / "tiny-random", batch_size=7)


def random_seqs(n: int, seed: int, lo: int = 1, hi: int = 1025) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGTNacgt"), int(k))) for k in rng.integers(lo, hi, n)]


def test_encoder_is_batch_size_invariant(encoder):
    seqs = random_seqs(70, seed=1)
    runs = []
    for bs in (1, 7, 64):
        encoder.batch_size = bs
        runs.append(encoder.embed(seqs))
    encoder.batch_size = 7
    assert runs[0].dtype == np.float32 and runs[0].shape == (70, encoder.dim)
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(encoder.embed([seqs[5]])[0], runs[0][5], atol=2e-5, rtol=1e-4)  # input order


def test_encoder_pooling_and_stages(encoder):
    seqs = ["ACGTTGCA" * 40, "acgtNNNN" * 3, "G"]
    batch = encoder.collate(seqs)
    assert batch["input_ids"].shape == (3, 321) and batch["lengths"].tolist() == [320, 24, 1]
    assert batch["input_ids"][2, :3].tolist() == [9, 1, 4]  # base, [SEP], right padding
    hidden = encoder.forward(batch)
    rows = encoder.decollate(hidden, batch)
    np.testing.assert_array_equal(rows, encoder.embed(seqs))
    for row, seq in zip(rows, seqs):  # mean over the bases of an unpadded run; [SEP] left out
        alone = run(encoder.model, HyenaDNATokenizer(upper=True)(seq)["input_ids"]).last_hidden_state[0]
        np.testing.assert_allclose(row, alone[:-1].mean(0), atol=5e-5, rtol=1e-4)
    np.testing.assert_array_equal(encoder.embed(["acgt"]), encoder.embed(["ACGT"]))  # soft-masked = bases
    last = HyenaDNAEncoder(DATA / "tiny-random", pooling="last")
    np.testing.assert_allclose(last.embed(seqs)[1], hidden[1, 24].numpy(), atol=1e-6)  # the [SEP] position
    assert isinstance(encoder, SequenceEncoder) and encoder.embed([]).shape == (0, encoder.dim)


def test_identity_is_deterministic_and_follows_the_weights(encoder, tmp_path):
    identity = encoder.identity()
    assert json.loads(json.dumps(identity)) == identity
    assert HyenaDNAEncoder(DATA / "tiny-random").identity() == identity
    assert identity["weights_sha256"] == encoder.identity()["weights_sha256"] == hashlib.sha256(
        (DATA / "tiny-random" / "model.safetensors").read_bytes()).hexdigest()
    assert HyenaDNAEncoder(DATA / "tiny-random", pooling="last").identity() != identity
    folder = copy_checkpoint(DATA / "tiny-random", tmp_path, lambda t: {**t, FC2: t[FC2] + 1e-3})
    assert HyenaDNAEncoder(folder).identity()["weights_sha256"] != identity["weights_sha256"]


def test_autocast_is_ignored_on_cpu_with_a_warning():
    with pytest.warns(UserWarning, match="autocast='bf16' ignored on CPU"):
        enc = HyenaDNAEncoder(DATA / "micro-random", autocast="bf16")
    assert enc.identity()["autocast"] is None
    with pytest.raises(HyenaDNAError, match="pooling"):
        HyenaDNAEncoder(DATA / "micro-random", pooling="max")


def test_filter_cache_follows_weight_edits():
    model = HyenaDNAModel.from_pretrained(DATA / "micro-random")
    ids = np.full(40, 8)
    before = run(model, ids).last_hidden_state
    with torch.no_grad():
        model.backbone.layers[0].mixer.filter_fn.modulation.deltas.mul_(2)
    assert not torch.allclose(run(model, ids).last_hidden_state, before)


def test_cpu_chunking_is_invisible(monkeypatch):
    model = HyenaDNAModel.from_pretrained(DATA / "micro-random")
    ids = torch.randint(7, 12, (5, 60))
    whole = run(model, ids, output_hidden_states=True)
    monkeypatch.setattr(hyenadna, "CPU_CHUNK_TOKENS", 60)  # one sequence per chunk
    chunked = run(model, ids, output_hidden_states=True)
    assert len(chunked.hidden_states) == len(whole.hidden_states) == 4
    for a, b in zip(chunked.hidden_states, whole.hidden_states):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_gradients_flow():
    """The in-place fast paths are inference-only; with autograd the model trains."""
    model = HyenaDNAModel.from_pretrained(DATA / "micro-random").train()
    model(torch.full((2, 30), 9)).last_hidden_state.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_helpers():
    assert [fft_length(n) for n in (2, 4, 402, 2002, 2050)] == [2, 4, 432, 2048, 2160]
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    with torch.inference_mode():
        np.testing.assert_allclose(gelu_tanh(x.clone()), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-15)
