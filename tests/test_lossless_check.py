"""The exact lossless check (bitedge.lossless) itself: it passes a correct run, accepts a code flipped at a rounding
boundary, and fails, naming where, on float differences beyond noise and on deliberately broken runtime builds.

The broken builds are the real runtime sources copied and patched (each patch must apply: a refactor that moves
the patched line makes this test fail loudly rather than silently test nothing), built, and run on a GQA model
with a 45-token prompt in batches of 32 (two prompt chunks, positions past 32) plus decode steps."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from _runtime_helpers import RUNTIME, build_runtime, generate_checked
from bitedge.convert.gguf_writer import write_gguf
from bitedge.gguf_read import read_model
from bitedge.lossless import PRE_ROUNDING_EPS, LosslessError, check_lossless
from bitedge.model import ModelConfig
from bitedge.native import ActivationRecord
from bitedge.reference import SITES, Reference

# 6 query heads on 2 kv heads (a wrong group mapping shows), sub-norms, two layers
CONFIG = ModelConfig(vocab_size=300, hidden_size=96, intermediate_size=160, num_layers=2, num_heads=6,
                     num_kv_heads=2, head_dim=16, context_length=64, tie_embeddings=True, ffn_act="relu2",
                     sub_norms=True, name="check")
PROMPT = [(i * 37 + 11) % 300 for i in range(45)]


@pytest.fixture(scope="module")
def model(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("check") / "check.gguf"
    write_gguf(tiny_model(CONFIG, seed=11, draw="scaled", tokenizer=None), path, packing="i2_s", embed_type="f32")
    return path, Reference(read_model(path))


# ------------------------------------------------------------------------------------------------ the check alone

def reference_run(reference, prompt, n):
    """A "runtime" that is the reference itself: its tokens, logits and activation records (one per site)."""
    tokens, _ = reference.generate(prompt, n)
    records = []

    def record(layer, site, positions, x, q, a):
        records.append(ActivationRecord(layer, SITES.index(site), int(positions[0]), a[:, 0].copy(), x.copy(), q))
        return q, a

    logits = np.asarray(reference.forward(prompt + tokens[:-1], quantize_hook=record))[len(prompt) - 1:]
    return tokens, logits, records


def test_the_reference_against_itself_passes(model):
    _, reference = model
    tokens, logits, records = reference_run(reference, PROMPT[:10], 4)
    report = check_lossless(reference, PROMPT[:10], tokens, logits, CONFIG.num_layers, records)
    assert report.flipped_codes == 0 and report.max_pre_rounding_diff == 0 and report.max_logit_rel_diff == 0


def test_a_code_flipped_at_a_rounding_boundary_is_accepted(model):
    """Move the input nearest to a rounding boundary just across it (as a last-bit difference upstream would) and
    let the "runtime" compute on from the flipped code: the run is still lossless, and the flip is counted."""
    _, reference = model
    prompt = PROMPT[:10]
    tokens, _, records = reference_run(reference, prompt, 4)

    def boundary_distance(r):
        v = (r.x * r.a[:, None]).astype(np.float32)
        distance = np.abs(np.abs(v - np.trunc(v)) - 0.5)
        distance[np.abs(r.x) == np.abs(r.x).max(axis=1, keepdims=True)] = np.inf  # never a row's absmax (a moves)
        return v, distance

    # of the ~11,000 inputs of this run, the one nearest to a boundary: ~4e-5 codes away (uniform spacing), far
    # inside the bound whatever the CPU's last bits
    r = min(records, key=lambda r: boundary_distance(r)[1].min())
    v, distance = boundary_distance(r)
    p, c = np.unravel_index(int(np.argmin(distance)), v.shape)
    assert distance[p, c] < PRE_ROUNDING_EPS / 4, "no input near enough to a boundary in this run"
    boundary = np.trunc(v[p, c]) + np.copysign(0.5, v[p, c])
    across = np.float32((boundary + np.sign(boundary - v[p, c]) * PRE_ROUNDING_EPS / 20) / r.a[p])
    flipped, records = [], []

    def flip_and_record(layer, site, positions, x, q, a):
        if (layer, SITES.index(site)) == (r.layer, r.site):
            x, q = x.copy(), q.copy()
            x[p, c] = across
            q[p, c] = np.int8(np.clip(np.rint(np.float32(x[p, c] * a[p, 0])), -128, 127))
            flipped.append(q[p, c] != r.q[p, c])
        records.append(ActivationRecord(layer, SITES.index(site), int(positions[0]), a[:, 0].copy(), x, q))
        return q, a

    logits = np.asarray(reference.forward(prompt + tokens[:-1], quantize_hook=flip_and_record))[len(prompt) - 1:]
    assert flipped == [True]
    report = check_lossless(reference, prompt, tokens, logits, CONFIG.num_layers, records)
    assert report.flipped_codes == 1


def test_a_difference_beyond_float_noise_is_named(model):
    _, reference = model
    tokens, logits, records = reference_run(reference, PROMPT[:10], 4)
    r = next(r for r in records if r.layer == 1 and SITES[r.site] == "attn_out")
    col = int(np.argmin(np.abs(r.x[3])))  # not the absmax: the scale stays, one pre-rounding value moves
    r.x[3, col] += np.float32(0.01 / r.a[3])  # 0.01 codes: five times the float-noise bound, no code change
    with pytest.raises(LosslessError, match=f"layer 1 attn_output input \\(attn_out\\), position 3 column {col}: "
                                            "x \\* a = .* beyond float noise"):
        check_lossless(reference, PROMPT[:10], tokens, logits, CONFIG.num_layers, records)


def test_a_code_that_is_not_the_runtimes_own_rounding_is_named(model):
    _, reference = model
    tokens, logits, records = reference_run(reference, PROMPT[:10], 4)
    r = next(r for r in records if r.layer == 0 and SITES[r.site] == "ffn_in")
    r.q[5, 7] = np.int8(r.q[5, 7] + (1 if r.q[5, 7] < 127 else -1))
    with pytest.raises(LosslessError, match="layer 0 ffn_gate/ffn_up input \\(ffn_in\\), position 5 column 7: the "
                                            "runtime's code"):
        check_lossless(reference, PROMPT[:10], tokens, logits, CONFIG.num_layers, records)


def test_a_missing_record_is_named(model):
    _, reference = model
    tokens, logits, records = reference_run(reference, PROMPT[:10], 4)
    records = [r for r in records if not (r.layer == 1 and SITES[r.site] == "ffn_out")]
    with pytest.raises(LosslessError, match="layer 1 ffn_down input \\(ffn_out\\), position 0 was never recorded"):
        check_lossless(reference, PROMPT[:10], tokens, logits, CONFIG.num_layers, records)


# ------------------------------------------------------------------------------------------------ broken builds

# name -> (file, the exact source text, its broken replacement, forced kernel table, what the check must say)
BUGS = {
    "rope-off-by-one-from-the-second-chunk": (
        "forward_attention.c",
        "(size_t)pos * half, *sin_row = s->rope_sin + (size_t)pos * half;",
        "(size_t)(pos + (t->places->pos0 > 0)) * half, *sin_row = s->rope_sin + (size_t)(pos + (t->places->pos0 > 0)) * half;",
        None, "layer 0 attn_output input \\(attn_out\\), position 32[: ]"),
    "attn-sub-norm-skipped-in-layer-1": (
        "forward.c", "(matmul_input){s->xb, L->attn_sub_norm, s->xb, q_dim}",
        "(matmul_input){s->xb, l == 1 ? NULL : L->attn_sub_norm, s->xb, q_dim}",
        None, "layer 1 attn_output input \\(attn_out\\), position 0[: ]"),
    "kv-head-of-the-wrong-query-group": (
        "forward_attention.c", "size_t kv_off = (size_t)(h / group) * hd;", "size_t kv_off = (size_t)((h / group + h) % c->n_kv_heads) * hd;",
        None, "layer 0 attn_output input \\(attn_out\\), position 0[: ]"),
    "o-proj-scale-off-by-1%-in-layer-0": (
        "forward.c", "{L->attn_output, L->attn_output_scale, hidden, s->x, 1}",
        "{L->attn_output, L->attn_output_scale * (l == 0 ? 1.01f : 1.0f), hidden, s->x, 1}",
        None, "layer 0 ffn_gate/ffn_up input \\(ffn_in\\), position 0[: ]"),
    "i2s-unpack-two-bits-swapped": (
        "kernels.c", "acc += (((b >> 2) & 3) - 1) * qb[j + 64];",
        "acc += ((((b >> 1) & 2) | ((b >> 3) & 1)) - 1) * qb[j + 64];",
        "scalar", "layer 0 attn_output input \\(attn_out\\), position 0[: ]"),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_broken_runtime_builds_are_caught(model, tmp_path, bug):
    file, original, broken, kernels, where = BUGS[bug]
    src = tmp_path / "src"
    shutil.copytree(RUNTIME, src, ignore=shutil.ignore_patterns("*.o", "bitedge-run"))
    text = (src / file).read_text()
    assert text.count(original) == 1, f"{bug}: the patched line is no longer in {file} exactly once"
    (src / file).write_text(text.replace(original, broken))
    binary = build_runtime(tmp_path / "bitedge-run-broken", runtime_dir=src)
    path, reference = model
    with pytest.raises(LosslessError, match=where) as caught:
        generate_checked(binary, path, reference, PROMPT, tmp_path, bug, n=6, batch=32, kernels=kernels)
    print(f"{bug}: {caught.value}")


def test_the_unbroken_build_passes_the_same_run(model, tmp_path):
    """The control for the broken builds: the same sources unpatched, the same run, lossless."""
    binary = build_runtime(tmp_path / "bitedge-run")
    path, reference = model
    for kernels in (None, "scalar"):
        generate_checked(binary, path, reference, PROMPT, tmp_path, f"control-{kernels}", n=6, batch=32,
                         kernels=kernels)
