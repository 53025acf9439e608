"""HyenaDNA (LongSafari ``hyenadna-*-hf`` checkpoints) in plain PyTorch, loaded offline.

A checkpoint folder holds ``config.json`` and ``model.safetensors`` (keys
``hyena.backbone.*`` + ``lm_head.weight``). It is read with safetensors directly: no
transformers, no remote code, no network. The equations are those of the upstream
``modeling_hyena.py``, as written down in ``shared/fixtures/hyenadna/README.md`` and checked
against its fixtures by ``tests/test_hyenadna.py``.

Facts of the model that callers must know:

* Tokens: one per character over a fixed 12-word vocabulary; case-sensitive (``acgt`` and IUPAC
  codes are ``[UNK]``); one ``[SEP]`` appended, nothing prepended.
* The model takes no attention mask, and every operator is causal (short conv, long conv,
  per-position LayerNorm and MLP). **Right padding is safe**: the valid positions equal an
  unpadded run up to float noise from the FFT length. **Left padding leaks** — the upstream
  tokenizer's default — it puts ``[PAD]`` into every sequence's history and moves outputs by
  O(1). gidx pads on the right.
* The implicit long filter depends only on the weights and the length L, so it is built once
  per forward for the whole batch, and its FFT is reused while L repeats (no-grad only).
* float32 is ~1e-4 off float64 even for tiny models: the filter stacks three sin(ω·) layers,
  ω ≈ 10, which amplify rounding. The filter is therefore never computed under autocast.
* The encoder upper-cases (soft-masked repeats read as bases; the reference tokenizer would
  make them ``[UNK]``) and averages the bases' hidden states, leaving out the ``[SEP]``.

Use::

    enc = HyenaDNAEncoder(folder)                     # or device="cuda", autocast="bf16"
    vectors = enc.embed(["ACGT...", "GGTA..."])       # (2, d_model) float32
    lm = HyenaDNAForCausalLM.from_pretrained(folder, dtype=torch.float64)
    logits = lm(torch.tensor([HyenaDNATokenizer()("ACGT")["input_ids"]])).logits
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import GidxError

SHIFT = 0.05  # modulation floor, hard-coded upstream (not in config.json)
BLOCK_LN_EPS = 1e-5  # norm1/norm2 use PyTorch's default eps, not layer_norm_epsilon
CPU_CHUNK_TOKENS = 2048  # tokens per thread per CPU pass, see HyenaDNAModel.forward


class HyenaDNAError(GidxError, ValueError):
    """A checkpoint that does not fit its config (or this implementation), a sequence
    longer than the model takes, or a bad option."""


@dataclass(frozen=True)
class HyenaDNAConfig:
    """The fields of a LongSafari ``config.json`` that shape the model; defaults are upstream's.

    A plain dataclass rather than ``transformers.PretrainedConfig``: it costs no transformers
    import (~0.5 s on top of torch), cannot trigger AutoConfig's remote-code prompt, and
    drops ``auto_map`` and other unknown keys instead of carrying them along.
    """

    vocab_size: int = 12
    d_model: int = 256
    d_inner: int | None = None  # None: 4 * d_model
    n_layer: int = 12
    max_seq_len: int = 1024
    emb_dim: int = 3
    filter_order: int = 64
    num_inner_mlps: int = 2
    short_filter_order: int = 3
    hyena_order: int = 2
    activation_freq: float = 1.0  # initial value of the Sin frequency; the checkpoint's wins
    train_freq: bool = True
    use_bias: bool = True  # read but unused upstream: the skip term always applies
    layer_norm_epsilon: float = 1e-5
    pad_vocab_size_multiple: int = 8
    model_type = "hyenadna"

    def __post_init__(self):
        if self.d_inner is None:
            object.__setattr__(self, "d_inner", 4 * self.d_model)
        unsupported = {"hyena_order": 2, "short_filter_order": 3, "train_freq": True}
        bad = [f"{k}={getattr(self, k)!r} (need {v!r})" for k, v in unsupported.items()
               if getattr(self, k) != v]
        if bad:
            raise HyenaDNAError("unsupported HyenaDNA config: " + ", ".join(bad))

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return -(-self.vocab_size // m) * m

    @classmethod
    def from_dict(cls, d: dict) -> HyenaDNAConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_pretrained(cls, folder) -> HyenaDNAConfig:
        return cls.from_dict(json.loads((Path(folder) / "config.json").read_text()))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class HyenaDNATokenizer:
    """Character tokenizer with the reference ids; pads on the right (see module docstring).

    ``upper=False`` (default) reproduces the reference exactly: lower-case bases are ``[UNK]``.
    ``upper=True`` reads ``a c g t n`` as ``A C G T N`` (soft-masked repeats stay bases);
    other characters are ``[UNK]`` either way. The encoder uses ``upper=True``.
    Special-token strings inside the text (e.g. ``"[SEP]"``) are read as characters.
    """

    vocab = {"[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5,
             "[UNK]": 6, "A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
    sep_token_id, pad_token_id, unk_token_id = 1, 4, 6

    def __init__(self, model_max_length: int | None = None, upper: bool = False,
                 padding_side: str = "right"):
        if padding_side not in ("right", "left"):
            raise HyenaDNAError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
        self.model_max_length, self.upper, self.padding_side = model_max_length, upper, padding_side
        self._lut = np.full(256, self.unk_token_id, dtype=np.int64)
        for base in "ACGTN":
            self._lut[ord(base)] = self.vocab[base]
            if upper:
                self._lut[ord(base.lower())] = self.vocab[base]

    @classmethod
    def from_pretrained(cls, folder, **kwargs) -> HyenaDNATokenizer:
        path = Path(folder) / "tokenizer_config.json"
        cfg = json.loads(path.read_text()) if path.exists() else {}
        max_len = cfg.get("model_max_length") or HyenaDNAConfig.from_pretrained(folder).max_seq_len
        return cls(model_max_length=max_len, **kwargs)

    def ids(self, seq: str, add_special_tokens: bool = True) -> np.ndarray:
        # 'replace' gives one '?' (-> [UNK]) per non-ASCII character, keeping one id per character
        ids = self._lut[np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)]
        return np.append(ids, self.sep_token_id) if add_special_tokens else ids

    def __call__(self, text: str | list[str], add_special_tokens: bool = True, padding=False,
                 truncation: bool = False, max_length: int | None = None,
                 return_attention_mask: bool | None = None, return_tensors: str | None = None):
        single = isinstance(text, str)
        max_length = max_length or self.model_max_length
        rows = [self.ids(s, add_special_tokens) for s in ([text] if single else text)]
        if truncation:  # cut to max_length tokens; the [SEP] stays last, like the reference
            rows = [np.append(r[: max_length - 1], r[-1]) if add_special_tokens and len(r) > max_length
                    else r[:max_length] for r in rows]
        out = {"input_ids": rows}
        if return_attention_mask or (return_attention_mask is None and padding):
            out["attention_mask"] = [np.ones(len(r), dtype=np.int64) for r in rows]
        if padding:
            width = max_length if padding == "max_length" else max(map(len, rows), default=0)
            for key, value in zip(out, (self.pad_token_id, 0)):
                out[key] = [self._pad(r, width, value) for r in out[key]]
        for key, value in out.items():
            if return_tensors in ("pt", "np"):  # (batch, length) even for one string, as in HF
                value = np.stack(value)
                out[key] = torch.from_numpy(value) if return_tensors == "pt" else value
            else:
                out[key] = value[0].tolist() if single else [v.tolist() for v in value]
        return out

    def _pad(self, row: np.ndarray, width: int, value: int) -> np.ndarray:
        pad = np.full(width - len(row), value, dtype=np.int64)
        return np.concatenate([row, pad] if self.padding_side == "right" else [pad, row])


@lru_cache(maxsize=None)
def fft_length(n: int) -> int:
    """Smallest even 5-smooth number >= n: fast real-FFT sizes for MKL/pocketfft. Measured
    (batch 8, D 128, 1 thread): 2L = 2002 -> 2048 is 24 % faster, 402 -> 432 is 3x faster."""
    m = n + n % 2
    while True:
        r = m // 2
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


class _Sin(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.freq = nn.Parameter(torch.empty(1, width))

    def forward(self, x):
        return torch.sin(self.freq * x)


def _container(**tensors) -> nn.Module:
    """A bare module that only carries checkpoint names (pos_emb, modulation, embeddings)."""
    m = nn.Module()
    for name, t in tensors.items():
        if isinstance(t, nn.Module | nn.Parameter):
            setattr(m, name, t)
        else:
            m.register_buffer(name, t)
    return m


class HyenaFilter(nn.Module):
    """Implicit long filter k (L x D) plus the per-channel skip term ``bias``."""

    def __init__(self, c: HyenaDNAConfig):
        super().__init__()
        D, F_, E = c.d_model, c.filter_order, c.emb_dim
        self.bias = nn.Parameter(torch.empty(D))
        self.pos_emb = _container(z=nn.Parameter(torch.empty(1, c.max_seq_len, E)),
                                  t=torch.empty(1, c.max_seq_len, 1))
        sin = _Sin(F_)  # one module at indices 1, 3, 5: the checkpoint stores only .1.freq
        layers = [nn.Linear(E, F_), sin]
        for _ in range(c.num_inner_mlps):
            layers += [nn.Linear(F_, F_), sin]
        self.implicit_filter = nn.Sequential(*layers, nn.Linear(F_, D, bias=False))
        self.modulation = _container(deltas=torch.empty(1, 1, D))
        self._cache = None  # (key, rfft of k): one entry, batches sorted by length repeat L

    def filter(self, L: int) -> torch.Tensor:
        z, t = self.pos_emb.z[0, :L], self.pos_emb.t[0, :L]
        with torch.autocast(z.device.type, enabled=False):
            k = self.implicit_filter(z)
        return k * (torch.exp(-t * self.modulation.deltas[0].abs()) + SHIFT)

    def filter_rfft(self, L: int, n: int) -> torch.Tensor:
        """(D, n//2 + 1): rfft of k with the skip term added at lag 0, so that one product
        gives k ∗ g + bias * g. Cached for the last (L, n) when no gradient is needed."""
        if torch.is_grad_enabled():
            return self._filter_rfft(L, n)
        # the key sees in-place weight edits (version) and swapped tensors (data_ptr)
        key = (L, n, *((p.data_ptr(), p._version) for p in self.parameters()),
               *((b.data_ptr(), b._version) for b in self.buffers()))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._filter_rfft(L, n))
        return self._cache[1]

    def _filter_rfft(self, L: int, n: int) -> torch.Tensor:
        k = self.filter(L).T.contiguous()
        return torch.fft.rfft(torch.cat([k[:, :1] + self.bias[:, None], k[:, 1:]], dim=1), n=n)


class HyenaOperator(nn.Module):
    """o = out_proj(x0 * (k ∗ (v * x1) + bias * v * x1)), [x0, x1, v] = short_conv(in_proj(u)).

    Works channels-first (B, C, L) between the two projections: the batched matmuls read and
    write the transposed layouts directly, and the depthwise conv and the FFTs run along
    contiguous time. About 20 % faster than the same operator kept in (B, L, C) with the
    short conv as shifted adds, and no transposed copies as in upstream.
    """

    def __init__(self, c: HyenaDNAConfig):
        super().__init__()
        D = c.d_model
        self.in_proj = nn.Linear(D, 3 * D)
        self.short_filter = nn.Conv1d(3 * D, 3 * D, 3, padding=2, groups=3 * D)
        self.filter_fn = HyenaFilter(c)
        self.out_proj = nn.Linear(D, D)

    def projections(self, u: torch.Tensor) -> torch.Tensor:
        """short_conv(in_proj(u)) as (B, 3D, L + 2); the first L time steps are the causal ones."""
        B = u.shape[0]
        p = torch.baddbmm(self.in_proj.bias[:, None], self.in_proj.weight.expand(B, -1, -1), u.mT)
        return self.short_filter(p)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, L, D = u.shape
        s = self.projections(u)
        x0, x1, v = s[:, :D, :L], s[:, D:2 * D, :L], s[:, 2 * D:, :L]
        n = fft_length(2 * L)
        kf = self.filter_fn.filter_rfft(L, n)  # weight dtype: float64 stays float64
        g = torch.fft.rfft((v * x1).to(kf.real.dtype), n=n)
        y = torch.fft.irfft(g * kf, n=n)[..., :L].to(x0.dtype) * x0
        return torch.baddbmm(self.out_proj.bias, y.mT, self.out_proj.weight.mT.expand(B, -1, -1))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """F.gelu(x, approximate="tanh") up to float rounding. Without autograd it uses
    0.5 (1 + tanh(a)) = sigmoid(2a) in place: torch's CPU sigmoid is 4x faster than its tanh
    (about 8 % of a forward)."""
    if torch.is_grad_enabled():
        return F.gelu(x, approximate="tanh")
    c = 2 * math.sqrt(2 / math.pi)
    return torch.addcmul(x.new_tensor(c), x, x, value=c * 0.044715).mul_(x).sigmoid_().mul_(x)


class HyenaBlock(nn.Module):
    def __init__(self, c: HyenaDNAConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.d_model, eps=BLOCK_LN_EPS)
        self.mixer = HyenaOperator(c)
        self.norm2 = nn.LayerNorm(c.d_model, eps=BLOCK_LN_EPS)
        self.mlp = _container(fc1=nn.Linear(c.d_model, c.d_inner), fc2=nn.Linear(c.d_inner, c.d_model))

    def forward(self, x):
        # residual adds go in place into the fresh sublayer outputs (autograd keeps neither);
        # .to keeps the residual stream in x's dtype (float32) under autocast, as upstream
        r = self.mixer(self.norm1(x)).to(x.dtype).add_(x)
        return self.mlp.fc2(gelu_tanh(self.mlp.fc1(self.norm2(r)))).to(r.dtype).add_(r)


@dataclass
class HyenaDNAOutput:
    last_hidden_state: torch.Tensor  # (B, L, D), after the final LayerNorm
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, each block, final norm
    logits: torch.Tensor | None = None  # HyenaDNAForCausalLM only


class _Pretrained(nn.Module):
    """Checkpoint loading shared by the backbone model and the LM."""

    may_skip: frozenset = frozenset()  # file tensors this class may leave unused

    @classmethod
    def from_pretrained(cls, folder, dtype: torch.dtype = torch.float32, device="cpu"):
        """Load ``folder``/model.safetensors, with or without the ``hyena.`` prefix. Any missing,
        unexpected or misshapen tensor is a HyenaDNAError (a ValueError) naming all of them."""
        if dtype not in (torch.float32, torch.float64):
            raise HyenaDNAError(f"dtype must be float32 or float64, not {dtype} (use autocast on GPU)")
        folder, path = Path(folder), Path(folder) / "model.safetensors"
        config = HyenaDNAConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = cls(config)
        # names are compared without the ForCausalLM prefix; named_parameters() lists a shared
        # module once, so the Sin frequency is expected only as implicit_filter.1.freq
        want = {k.removeprefix("hyena."): (k, t.shape)
                for k, t in [*model.named_parameters(), *model.named_buffers()]}
        with torch.inference_mode(False):  # inference tensors have no version for the filter cache
            stored = load_file(path)
        tensors = {k.removeprefix("hyena."): (k, t) for k, t in stored.items()}
        prefix = "hyena." if any(k != f for k, (f, _) in tensors.items()) else ""
        missing = [(prefix if k.startswith("backbone.") else "") + k for k in want if k not in tensors]
        unexpected = [f for k, (f, _) in tensors.items() if k not in want and f not in cls.may_skip]
        unexpected += [f for f in stored if tensors[f.removeprefix("hyena.")][0] != f]  # x and hyena.x
        shapes = [f"{f} {tuple(t.shape)} (expected {tuple(want[k][1])})"
                  for k, (f, t) in tensors.items() if k in want and t.shape != want[k][1]]
        if missing or unexpected or shapes:
            problems = [f"{what}: {', '.join(names)}" for what, names in
                        [("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)] if names]
            raise HyenaDNAError(f"{path} does not fit its config.json (d_model={config.d_model}, "
                                f"n_layer={config.n_layer}): " + "; ".join(problems))
        for k, (name, _) in want.items():
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            t = tensors[k][1].to(device=device, dtype=dtype)
            if attr in module._parameters:
                setattr(module, attr, nn.Parameter(t))
            else:
                module.register_buffer(attr, t)
        return model.eval()


class HyenaDNAModel(_Pretrained):
    """The backbone; state_dict keys as upstream ``HyenaDNAModel`` (``backbone.*``)."""

    may_skip = frozenset({"lm_head.weight"})

    def __init__(self, config: HyenaDNAConfig):
        super().__init__()
        self.config = c = config
        self.backbone = _container(
            embeddings=_container(word_embeddings=nn.Embedding(c.padded_vocab_size, c.d_model)),
            layers=nn.ModuleList(HyenaBlock(c) for _ in range(c.n_layer)),
            ln_f=nn.LayerNorm(c.d_model, eps=c.layer_norm_epsilon))

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> HyenaDNAOutput:
        if input_ids.dim() != 2:
            raise HyenaDNAError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        L, limit = input_ids.shape[1], self.config.max_seq_len
        if L > limit:
            raise HyenaDNAError(f"input of {L} tokens exceeds this checkpoint's max_seq_len={limit} "
                                f"(tokens include the appended [SEP])")
        # On CPU, run ~CPU_CHUNK_TOKENS tokens per thread at a time: the intermediates then
        # stay in cache (1 thread, batch 8 x 1 kbp: ~20 % faster than one pass), and each
        # thread still gets a large share of every op. Sequences are independent.
        rows = len(input_ids)
        if input_ids.device.type == "cpu":
            rows = max(1, CPU_CHUNK_TOKENS * torch.get_num_threads() // L)
        parts = [self._states(ids, output_hidden_states) for ids in input_ids.split(rows)]
        states = [torch.cat(s) for s in zip(*parts)] if len(parts) > 1 else parts[0]
        return HyenaDNAOutput(states[-1], tuple(states) if output_hidden_states else None)

    def _states(self, input_ids: torch.Tensor, keep_all: bool) -> list[torch.Tensor]:
        b = self.backbone
        x = b.embeddings.word_embeddings(input_ids)
        states = [x]
        for layer in b.layers:
            x = layer(x)
            if keep_all:
                states.append(x)
        x = b.ln_f(x)
        return [*states, x] if keep_all else [x]


class HyenaDNAForCausalLM(_Pretrained):
    """Backbone + untied ``lm_head`` (no bias); keys as the LongSafari checkpoints."""

    def __init__(self, config: HyenaDNAConfig):
        super().__init__()
        self.config = config
        self.hyena = HyenaDNAModel(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> HyenaDNAOutput:
        out = self.hyena(input_ids, output_hidden_states)
        out.logits = self.lm_head(out.last_hidden_state)
        return out


class HyenaDNAEncoder:
    """Sequence -> one vector: HyenaDNA last hidden states, pooled over the sequence's bases.

    Tokens are upper-cased (soft-masked repeats read as bases) and get the [SEP] appended, as
    in HyenaDNA's training data. ``pooling="mean"`` averages the bases' positions and leaves
    the [SEP] out, so the vector is a mean over exactly the input; ``pooling="last"`` takes
    the [SEP] position, the one causal position that has seen the whole sequence.
    Batches are right-padded (safe: the model is causal) and sorted by length.
    """

    name = "hyenadna"

    def __init__(self, folder, device: str = "cpu", batch_size: int = 32,
                 autocast: str | None = None, pooling: str = "mean", threads: int | None = None):
        if pooling not in ("mean", "last"):
            raise HyenaDNAError(f"pooling must be 'mean' or 'last', not {pooling!r}")
        if autocast not in (None, "bf16", "fp16"):
            raise HyenaDNAError(f"autocast must be None, 'bf16' or 'fp16', not {autocast!r}")
        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                   else "cpu" if device == "auto" else device)
        if autocast and self.device.type == "cpu":
            warnings.warn(f"autocast={autocast!r} ignored on CPU; running float32", stacklevel=2)
            autocast = None
        self.folder, self.batch_size, self.pooling, self.autocast = Path(folder), batch_size, pooling, autocast
        self.model = HyenaDNAModel.from_pretrained(self.folder, device=self.device)
        self.config = self.model.config
        self.tokenizer = HyenaDNATokenizer(self.config.max_seq_len, upper=True)
        self._sha256 = None

    @property
    def dim(self) -> int:
        return self.config.d_model

    @property
    def max_len(self) -> int:
        """Most bases per sequence: max_seq_len minus the appended [SEP]."""
        return self.config.max_seq_len - 1

    def identity(self) -> dict:
        """Everything that determines the vectors; part of a content address."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.folder / "model.safetensors", "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return {"name": self.name, "config": self.config.to_dict(), "weights_sha256": self._sha256,
                "pooling": self.pooling, "tokens": "upper-cased, [SEP] appended, [SEP] not pooled",
                "autocast": self.autocast}

    def collate(self, seqs: list[str]) -> dict[str, torch.Tensor]:
        """input_ids (B, T) right-padded with [PAD]; lengths (B,) = bases (tokens = lengths + 1)."""
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        bad = np.flatnonzero((lengths == 0) | (lengths > self.max_len))
        if len(bad):
            raise HyenaDNAError(f"{len(bad)} sequence(s) outside 1..{self.max_len} bases (max_seq_len "
                                f"{self.config.max_seq_len} minus the [SEP]); first: sequence {bad[0]} "
                                f"with {lengths[bad[0]]} bases")
        ids = np.full((len(seqs), lengths.max(initial=0) + 1), HyenaDNATokenizer.pad_token_id)
        for row, s in zip(ids, seqs):
            row[: len(s) + 1] = self.tokenizer.ids(s)
        return {"input_ids": torch.from_numpy(ids), "lengths": torch.from_numpy(lengths)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"].to(self.device, non_blocking=True)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.autocast)
        with torch.inference_mode(), (torch.autocast(self.device.type, dtype) if dtype else nullcontext()):
            return self.model(ids).last_hidden_state

    def decollate(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            h, n = hidden.float(), batch["lengths"].to(hidden.device)
            if self.pooling == "last":
                pooled = h[torch.arange(len(n), device=h.device), n]
            else:  # mean over the bases; the [SEP] at position n and the padding are masked out
                mask = (torch.arange(h.shape[1], device=h.device) < n[:, None]).to(h.dtype)
                pooled = torch.bmm(mask[:, None], h)[:, 0] / n[:, None]
            return pooled.cpu().numpy()

    def embed(self, seqs: list[str]) -> np.ndarray:
        """(n, dim) float32, rows in input order; batches of similar length cut padding."""
        out = np.empty((len(seqs), self.dim), dtype=np.float32)
        order = np.argsort(np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs)), kind="stable")
        for start in range(0, len(seqs), self.batch_size):
            idx = order[start: start + self.batch_size]
            batch = self.collate([seqs[i] for i in idx])
            out[idx] = self.decollate(self.forward(batch), batch)
        return out
