"""The numpy reference forward pass: the oracle the C runtime is judged against.

It runs any ModelSource (a Hugging Face import or a GGUF read back) with the arithmetic of transformers'
BitNet (see docs/conversion.md for every op, its order and dtype) and the integer contract of
kernels/runtime/kernels.h: per-token int8 activations, an exact integer ternary product, then one fp32
rescale y = acc * (s / a).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitedge.formats.ternary import quantize_activations
from bitedge.errors import BitedgeError
from bitedge.model import ModelSource, Ternary

F32 = np.float32
EXACT_F32_SUM = 1 << 24  # integers below 2^24 are exact in fp32, so any summation order gives the same acc


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x * rsqrt(mean(x^2) + eps) * weight, fp32 (the sum of squares is accumulated in float64, rounded once)."""
    x = x.astype(F32, copy=False)
    mean_sq = (np.square(x.astype(np.float64)).sum(axis=-1, keepdims=True) / x.shape[-1]).astype(F32)
    inv = F32(1.0) / np.sqrt(mean_sq + F32(eps))
    return (x * inv) * weight


class TernaryLinear:
    """One ternary linear layer: W_eff = T * scale."""

    def __init__(self, t: Ternary, name: str = "", keep_float: bool = True):
        self.name = name
        self.trace: list | None = None  # when a list: (name, q, a) of every call is appended (tests)
        self.values = np.ascontiguousarray(t.values, dtype=np.int8)
        self.scale = F32(t.scale)
        k = self.values.shape[1]
        self.dtype = np.float32 if 128 * k < EXACT_F32_SUM else np.float64
        # [K, N] exact small integers for BLAS; big models convert per call instead of holding 4x the bytes
        self.values_f = self.values.astype(self.dtype).T.copy() if keep_float else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        q, a = quantize_activations(x)  # q [T, K] int8, a [T, 1] fp32
        if self.trace is not None:
            self.trace.append((self.name, q, a))
        return self.apply(q, a)

    def apply(self, q: np.ndarray, a: np.ndarray) -> np.ndarray:
        """y [T, N] from activations already quantized: q [T, K] int8, a [T, 1] fp32."""
        values_f = self.values_f if self.values_f is not None else self.values.astype(self.dtype).T
        acc = (q.astype(self.dtype) @ values_f).astype(np.int32)  # exact
        return acc.astype(F32) * (self.scale / a)  # (s / a) once per token, in fp32


# The four places per layer where activations are quantized, in the order of the forward pass; the runtime's
# activation dump (bitedge-run --dump-activations, be_act_site in forward.h) numbers them the same way.
SITES = ("attn_in", "attn_out", "ffn_in", "ffn_out")
SITE_LINEARS = {"attn_in": ("attn_q", "attn_k", "attn_v"), "attn_out": ("attn_output",),
                "ffn_in": ("ffn_gate", "ffn_up"), "ffn_out": ("ffn_down",)}


def rope_tables(head_dim: int, theta: float, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [T, head_dim] of NeoX RoPE: inv_freq = 1/theta**(arange(0,d,2)/d), angle = pos * inv_freq (fp32)."""
    exponent = np.arange(0, head_dim, 2, dtype=F32) / F32(head_dim)
    inv_freq = F32(1.0) / np.power(F32(theta), exponent, dtype=F32)
    angles = positions.astype(F32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([angles, angles], axis=-1)
    return np.cos(emb).astype(F32), np.sin(emb).astype(F32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x [heads, T, d]: x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1) (dims i and i+d/2 pair)."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


@dataclass
class KVCache:
    """Per-layer keys (after RoPE) and values, [kv_heads, positions, head_dim] fp32."""

    k: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.k[0].shape[1] if self.k else 0


@dataclass
class Block:
    attn_norm: np.ndarray
    q: TernaryLinear
    k: TernaryLinear
    v: TernaryLinear
    attn_sub_norm: np.ndarray | None
    o: TernaryLinear
    ffn_norm: np.ndarray
    gate: TernaryLinear
    up: TernaryLinear
    ffn_sub_norm: np.ndarray | None
    down: TernaryLinear


KEEP_FLOAT_LIMIT = 1 << 28  # ternary weights up to this count also keep a float copy (1 GiB) for speed


class Reference:
    def __init__(self, source: ModelSource):
        self.config = cfg = source.config.validate()
        source.check_complete()
        w = dict(source.iter_tensors())  # every tensor once: fp32 arrays and Ternary
        for name, value in w.items():
            if name.startswith("blk.") and name.split(".")[2] in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
                if not isinstance(value, Ternary):
                    raise BitedgeError(f"reference: {name} must be ternary")
            elif isinstance(value, Ternary):
                raise BitedgeError(f"reference: {name} must be a float tensor")
        self.tokenizer = source.tokenizer
        self._quantize_hook = None  # set by forward()
        self._positions = None      # positions of the tokens forward() is running
        self.embed = np.asarray(w["token_embd.weight"], dtype=F32)
        self.output = self.embed if cfg.tie_embeddings else np.asarray(w["output.weight"], dtype=F32)
        self.output_norm = np.asarray(w["output_norm.weight"], dtype=F32)
        self.blocks = []
        n_ternary = sum(v.values.size for v in w.values() if isinstance(v, Ternary))
        keep = n_ternary <= KEEP_FLOAT_LIMIT

        def linear(t, name):
            return TernaryLinear(t, name, keep)

        for i in range(cfg.num_layers):
            p = f"blk.{i}."
            self.blocks.append(
                Block(
                    attn_norm=np.asarray(w[p + "attn_norm.weight"], dtype=F32),
                    q=linear(w[p + "attn_q.weight"], p + "attn_q"),
                    k=linear(w[p + "attn_k.weight"], p + "attn_k"),
                    v=linear(w[p + "attn_v.weight"], p + "attn_v"),
                    attn_sub_norm=np.asarray(w[p + "attn_sub_norm.weight"], dtype=F32) if cfg.sub_norms else None,
                    o=linear(w[p + "attn_output.weight"], p + "attn_output"),
                    ffn_norm=np.asarray(w[p + "ffn_norm.weight"], dtype=F32),
                    gate=linear(w[p + "ffn_gate.weight"], p + "ffn_gate"),
                    up=linear(w[p + "ffn_up.weight"], p + "ffn_up"),
                    ffn_sub_norm=np.asarray(w[p + "ffn_sub_norm.weight"], dtype=F32) if cfg.sub_norms else None,
                    down=linear(w[p + "ffn_down.weight"], p + "ffn_down"),
                )
            )

    def new_cache(self) -> KVCache:
        return KVCache()

    # ------------------------------------------------------------------------------------------ forward

    def linears(self) -> list[TernaryLinear]:
        return [lin for b in self.blocks for lin in (b.q, b.k, b.v, b.o, b.gate, b.up, b.down)]

    def forward(self, tokens, pos0: int = 0, cache: KVCache | None = None, trace: list | None = None,
                quantize_hook=None) -> np.ndarray:
        """Logits [len(tokens), vocab] fp32 for tokens at positions pos0.. ; cache (if given) grows in place.
        trace (a list) collects (linear name, q int8, a) of every linear's quantized input, in call order.
        quantize_hook(layer, site, positions [T], x [T, K], q [T, K] int8, a [T, 1]) sees every activation
        quantization (x and the reference's own q, a) and returns the (q, a) the linears then use: bitedge.lossless
        forces the runtime's codes through it."""
        for lin in self.linears():
            lin.trace = trace
        self._quantize_hook = quantize_hook
        cfg = self.config
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise BitedgeError("reference: no tokens to run")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise BitedgeError(f"reference: token id out of range 0..{cfg.vocab_size - 1}")
        cache = cache if cache is not None else KVCache()
        if pos0 != cache.length:
            raise BitedgeError(f"reference: pos0 {pos0} does not continue the cache ({cache.length} positions)")
        positions = self._positions = np.arange(pos0, pos0 + tokens.size)
        cos, sin = rope_tables(cfg.head_dim, cfg.rope_theta, positions)
        h = self.embed[tokens].copy()
        for i, block in enumerate(self.blocks):
            h = h + self.attention(block, i, rms_norm(h, block.attn_norm, cfg.rms_norm_eps), cos, sin, cache, pos0)
            h = h + self.ffn(block, i, rms_norm(h, block.ffn_norm, cfg.rms_norm_eps))
        h = rms_norm(h, self.output_norm, cfg.rms_norm_eps)
        return h @ self.output.T

    def quantize(self, layer: int, site: str, x: np.ndarray, *linears: TernaryLinear) -> tuple[np.ndarray, np.ndarray]:
        """The int8 codes and scales of x for the linears that share it (q/k/v, gate/up: one quantization)."""
        q, a = quantize_activations(x)
        if self._quantize_hook is not None:
            q, a = self._quantize_hook(layer, site, self._positions, x, q, a)
        for lin in linears:
            if lin.trace is not None:
                lin.trace.append((lin.name, q, a))
        return q, a

    def attention(self, block: Block, layer: int, x, cos, sin, cache: KVCache, pos0: int) -> np.ndarray:
        cfg = self.config
        n, d = x.shape[0], cfg.head_dim
        xq = self.quantize(layer, "attn_in", x, block.q, block.k, block.v)
        q = block.q.apply(*xq).reshape(n, cfg.num_heads, d).transpose(1, 0, 2)  # [H, T, d]
        k = block.k.apply(*xq).reshape(n, cfg.num_kv_heads, d).transpose(1, 0, 2)  # [KV, T, d]
        v = block.v.apply(*xq).reshape(n, cfg.num_kv_heads, d).transpose(1, 0, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if layer < len(cache.k):
            cache.k[layer] = np.concatenate([cache.k[layer], k], axis=1)
            cache.v[layer] = np.concatenate([cache.v[layer], v], axis=1)
        else:
            cache.k.append(k)
            cache.v.append(v)
        keys, values = cache.k[layer], cache.v[layer]  # [KV, S, d]
        rep = cfg.num_heads // cfg.num_kv_heads
        keys, values = np.repeat(keys, rep, axis=0), np.repeat(values, rep, axis=0)  # kv head j -> heads j*rep..
        scores = (q @ keys.transpose(0, 2, 1)) * F32(d**-0.5)  # [H, T, S]
        s = keys.shape[1]
        causal = np.arange(s)[None, :] > (pos0 + np.arange(n))[:, None]  # key position after query position
        scores = np.where(causal[None], F32(-np.inf), scores)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        out = (probs @ values).transpose(1, 0, 2).reshape(n, cfg.q_dim)
        if block.attn_sub_norm is not None:
            out = rms_norm(out, block.attn_sub_norm, cfg.rms_norm_eps)
        return block.o.apply(*self.quantize(layer, "attn_out", out, block.o))

    def ffn(self, block: Block, layer: int, x: np.ndarray) -> np.ndarray:
        xq = self.quantize(layer, "ffn_in", x, block.gate, block.up)
        gate, up = block.gate.apply(*xq), block.up.apply(*xq)
        if self.config.ffn_act == "relu2":
            act = np.square(np.maximum(gate, F32(0)))
        else:  # silu(g) = g * sigmoid(g)
            act = gate * (F32(1.0) / (F32(1.0) + np.exp(-gate)))
        hidden = act * up
        if block.ffn_sub_norm is not None:
            hidden = rms_norm(hidden, block.ffn_sub_norm, self.config.rms_norm_eps)
        return block.down.apply(*self.quantize(layer, "ffn_out", hidden, block.down))

    # ------------------------------------------------------------------------------------------ generate

    def generate(self, prompt_tokens, n: int, greedy: bool = True, temperature: float = 1.0, seed: int = 0, stop_at_eos: bool = False):
        """Run the prompt, then n decode steps of one token each (KV cache).

        Returns (tokens, step_logits): the n generated ids and the fp32 logits each was chosen from
        ([n, vocab]; row 0 is the prompt's last row).  top2_margin(step_logits) gives the tie margins.
        """
        cache = self.new_cache()
        logits = self.forward(prompt_tokens, 0, cache)[-1]
        rng = np.random.default_rng(seed)
        out, steps = [], []
        eos = self.tokenizer.eos_id if self.tokenizer is not None else None
        for step in range(n):
            steps.append(logits)
            if greedy:
                token = int(np.argmax(logits))
            else:
                z = logits.astype(np.float64) / max(temperature, 1e-6)
                p = np.exp(z - z.max())
                token = int(rng.choice(p.size, p=p / p.sum()))
            out.append(token)
            if (stop_at_eos and token == eos) or step == n - 1:
                break
            logits = self.forward([token], cache.length, cache)[-1]
        return out, np.stack(steps) if steps else np.zeros((0, self.config.vocab_size), F32)


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Per row: (largest - second largest) / max(|largest|, 1e-30), the relative margin of the greedy choice."""
    logits = np.atleast_2d(logits)
    top = np.sort(logits, axis=-1)[:, -2:]
    return (top[:, 1] - top[:, 0]) / np.maximum(np.abs(top[:, 1]), 1e-30)
