"""Dummy presets: shapes, determinism, HF checkpoints that load_hf imports, and streaming GGUF writes."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bitedge.convert.dummy import PRESETS, dummy_source, preset_config
from bitedge.convert.hf_writer import write_dummy_hf
from bitedge.convert.gguf_writer import write_gguf
from bitedge.formats.packing import PACKINGS
from bitedge.errors import BitedgeError
from bitedge.gguf_read import read_model
from bitedge.model import Ternary, is_ternary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_preset_shapes():
    c = preset_config("2.4B")
    assert (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.num_kv_heads, c.vocab_size) == (
        2560, 6912, 30, 20, 5, 128256)
    assert c.ffn_act == "relu2" and c.tie_embeddings and c.sub_norms and c.head_dim == 128
    c = preset_config("700M")
    assert (c.hidden_size, c.intermediate_size, c.num_layers, c.num_heads, c.vocab_size) == (1536, 4096, 24, 16, 32002)
    assert c.ffn_act == "silu" and c.sub_norms and not c.tie_embeddings
    # every preset's parameter count is within 15% of its name
    for name in PRESETS:
        if name == "test":
            continue
        size = float(name[:-1]) * (1e9 if name.endswith("B") else 1e6)
        assert abs(preset_config(name).n_params() / size - 1) < 0.15, name
    with pytest.raises(BitedgeError, match="unknown dummy preset"):
        preset_config("5B")


def test_dummy_source_is_deterministic_and_lazy():
    a, b, c = dummy_source("test", seed=0), dummy_source("test", seed=0), dummy_source("test", seed=1)
    names = list(a.tensors)
    for name in reversed(names):  # loading order must not matter
        x, y, z = a.tensors[name](), b.tensors[name](), c.tensors[name]()
        if is_ternary(name):
            assert isinstance(x, Ternary) and set(np.unique(x.values)) <= {-1, 0, 1}
            np.testing.assert_array_equal(x.values, y.values)
            assert x.scale == y.scale and not np.array_equal(x.values, z.values)
        else:
            np.testing.assert_array_equal(x, y)
            assert not np.array_equal(x, z)
    a.check_complete()
    emb = a.tensors["token_embd.weight"]()
    assert len({row.tobytes() for row in np.asarray(emb)}) == emb.shape[0]  # rows distinct
    big = dummy_source("2.4B").tensors["token_embd.weight"]()  # a view: 128256 x 2560 costs no memory
    assert big.shape == (128256, 2560) and big.base is not None and not big.flags.writeable


def test_dummy_gguf_round_trip(tmp_path):
    src = dummy_source("test", seed=7)
    out = tmp_path / "d.gguf"
    write_gguf(src, out, packing="tq2_0", embed_type="f32")
    back = read_model(out)
    assert back.config == src.config
    for name, load in src.tensors.items():
        a, b = load(), back.tensors[name]()
        if is_ternary(name):
            np.testing.assert_array_equal(a.values, b.values)
        else:
            np.testing.assert_array_equal(np.asarray(a), b)


def test_write_dummy_hf_loads_with_load_hf(tmp_path):
    from bitedge.convert.hf import load_hf
    from bitedge.convert.hf_safetensors import index_safetensors, read_tensor
    from bitedge.formats.ternary import ternarize

    d = tmp_path / "hf"
    summary = write_dummy_hf("test", d, seed=2, max_shard_bytes=300_000)
    assert len(summary["files"]) > 1
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(summary["files"])
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architectures"] == ["BitNetForCausalLM"] and cfg["quantization_config"]["quantization_mode"] == "online"

    src = load_hf(str(d))
    want = preset_config("test")
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                  "head_dim", "ffn_act", "sub_norms", "tie_embeddings", "rope_theta", "context_length"):
        assert getattr(src.config, field) == getattr(want, field), field
    dummy_tokens = dummy_source("test").tokenizer.tokens
    assert src.tokenizer.tokens[: len(dummy_tokens)] == dummy_tokens  # the importer may pad to vocab_size
    assert src.tokenizer.bos_id == dummy_source("test").tokenizer.bos_id and src.tokenizer.add_bos
    # the master weights are bf16 of N(0, 0.02); the importer ternarizes them per tensor
    entries = index_safetensors([str(d / f) for f in summary["files"]])
    master = read_tensor(entries["model.layers.1.mlp.down_proj.weight"])
    assert master.shape == (256, 512) and 0.015 < master.std() < 0.025
    t = src.tensors["blk.1.ffn_down.weight"]()
    np.testing.assert_array_equal(t.values, ternarize(master).values)
    out = tmp_path / "hf.gguf"
    write_gguf(src, out, packing="i2_s")
    assert read_model(out).config.hidden_size == 256

    with pytest.raises(BitedgeError, match="already holds a checkpoint"):
        write_dummy_hf("test", d)
    write_dummy_hf("test", d, force=True)  # one shard now: stale shards and index are gone
    assert sorted(p.name for p in d.glob("model*")) == ["model.safetensors"]


def test_streaming_write_of_1_3b_keeps_memory_low(tmp_path):
    """Writing the 1.3B preset (566 MB of I2_S + f16) must not hold the model in memory."""
    out = tmp_path / "big.gguf"
    script = textwrap.dedent(f"""
        import json, resource
        from bitedge.convert.dummy import dummy_source
        from bitedge.convert.gguf_writer import write_gguf
        summary = write_gguf(dummy_source("1.3B"), {str(out)!r}, packing="i2_s", embed_type="f16")
        # VmHWM is this process's own peak: getrusage's ru_maxrss survives execve, so it would report
        # the (larger) pytest parent's RSS at fork time instead of the writer's.
        status = open("/proc/self/status").read()
        hwm = [line for line in status.splitlines() if line.startswith("VmHWM:")]
        summary["peak_rss"] = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(summary))
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    size = out.stat().st_size
    c = preset_config("1.3B")
    i2s = PACKINGS["i2_s"]
    ternary = c.num_layers * sum(i2s.nbytes(*c.tensor_shapes()[f"blk.0.{r}.weight"]) for r in
                                 ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"))
    assert summary["ternary_bytes"] == ternary
    assert size > ternary + 2 * c.vocab_size * c.hidden_size * 2  # + two f16 embedding matrices (untied)
    print(f"1.3B I2_S: {size / 1e6:.0f} MB file, peak RSS {summary['peak_rss'] / 1e6:.0f} MB, {summary['seconds']:.1f} s")
    assert summary["peak_rss"] < size / 3
