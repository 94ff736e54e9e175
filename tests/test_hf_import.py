"""Hugging Face importer: config, canonical names, ternary values versus transformers' own quantization, errors."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from _hf_helpers import CASES, Shape, case_dir, hf_model, make_checkpoint, no_torch_compile
from bitedge.convert.hf import load_hf, unpack_hf_ternary
from bitedge.formats.ternary import exact_ternary, quantize_activations, ternarize, ternary_distance
from bitedge.errors import BitedgeError
from bitedge.model import TOKEN_CONTROL, Ternary, is_ternary

HF_LINEARS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


# ---------------------------------------------------------------------------------------------- ternarize


def test_ternarize_follows_weight_quant_arithmetic():
    from transformers.integrations.bitnet import WeightQuant

    rng = np.random.default_rng(0)
    w = (0.03 * rng.standard_normal((64, 96))).astype(np.float32)
    w[0, :4] = [0.0, 1e-9, -1e-9, 0.5]
    t = ternarize(w)
    assert t.values.dtype == np.int8 and set(np.unique(t.values)) <= {-1, 0, 1}
    with no_torch_compile():
        w_eff = WeightQuant.apply(torch.from_numpy(w)).numpy()
    s = np.float32(1) / np.float32(np.abs(w.astype(np.float64)).mean())
    assert np.array_equal(t.values, np.clip(np.rint(w * s), -1, 1))
    np.testing.assert_allclose(t.dequantize(), w_eff, rtol=2.5e-7, atol=0)  # scale within an ulp of 1/s
    # round half to even: 0.5 -> 0, -0.5 -> 0, 2.5 -> 2 -> clipped to 1
    half = np.array([[0.5, -0.5, 2.5, 0.5]], np.float32)  # mean|w| = 1, so s = 1 and W*s sits on .5
    assert ternarize(half).values.tolist() == [[0, 0, 1, 0]]
    # all-zero tensors use the 1e-5 floor, not a division by zero
    z = ternarize(np.zeros((4, 4), np.float32))
    assert not z.values.any() and z.scale == pytest.approx(1e-5)


def test_quantize_activations_per_token():
    from transformers.integrations.bitnet import BitLinear

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5, 300)) * np.array([[1e-7], [1], [30], [1e3], [0]])).astype(np.float32)
    q, a = quantize_activations(x)
    with no_torch_compile():
        q_hf, a_hf = BitLinear.activation_quant(None, torch.from_numpy(x))
    assert np.array_equal(q, q_hf.numpy())
    # torch evaluates 127 / t as t.reciprocal() * 127 (two roundings); we divide once, as kernels.h says
    np.testing.assert_allclose(a, a_hf.numpy(), rtol=1.2e-7, atol=0)
    assert q.dtype == np.int8 and a.shape == (5, 1)
    assert np.abs(q[1:4]).max(axis=1).tolist() == [127, 127, 127]


def test_ternary_distance_and_exact_ternary():
    t = np.random.default_rng(2).integers(-1, 2, (16, 16)).astype(np.float32)
    exact = exact_ternary(t * np.float32(0.0123))
    assert exact is not None and np.array_equal(exact.values, t) and exact.scale == np.float32(0.0123)
    d = ternary_distance(t * np.float32(0.0123))
    assert d.is_ternary and d.distinct_abs == 1 and d.max_rel_error < 1e-6
    g = ternary_distance(np.random.default_rng(3).standard_normal((32, 32)).astype(np.float32))
    assert not g.is_ternary and g.distinct_abs > 900 and 0.2 < g.max_rel_error < 1.5 and g.rms_rel_error > 0.3


def test_unpack_matches_transformers_layout():
    from transformers.integrations.bitnet import pack_weights, unpack_weights

    t = torch.from_numpy(np.random.default_rng(4).integers(-1, 2, (40, 12)).astype(np.int8))
    packed = pack_weights(t.clone())
    assert packed.shape == (10, 12)
    ours = unpack_hf_ternary(packed.numpy(), "w")
    with no_torch_compile():
        theirs = unpack_weights(packed, dtype=torch.float32).numpy()
    assert np.array_equal(ours, t.numpy()) and np.array_equal(ours, theirs)
    # row i*(out/4)+j lives in bits 2i of byte row j: blocks, not adjacent rows
    assert ours[10, 3] == ((int(packed[0, 3]) >> 2) & 3) - 1


# ---------------------------------------------------------------------------------------------- import


@pytest.mark.parametrize("case", list(CASES))
def test_import_config_names_and_ternary_values(case):
    directory = case_dir(case)
    shape, layout, tok = CASES[case]
    src = load_hf(directory)
    cfg = src.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_layers) == (shape.vocab, shape.hidden, shape.ffn, shape.layers)
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (shape.heads, shape.kv_heads, shape.hidden // shape.heads)
    assert cfg.tie_embeddings == shape.tied and cfg.rope_theta == shape.theta and cfg.rms_norm_eps == 1e-5
    assert cfg.ffn_act == ("silu" if layout in ("llama-bitnet", "1bitllm") else "relu2")
    assert cfg.sub_norms == (layout != "llama-bitnet")
    assert cfg.context_length == 256
    src.check_complete()
    assert list(src.tensors) == list(cfg.tensor_shapes())
    assert len(src.source_sha256) == 64

    model = hf_model(directory)  # transformers' quantized modules hold what it computes with
    modules = dict(model.named_modules())
    for name, value in src.iter_tensors():
        if not is_ternary(name):
            assert isinstance(value, np.ndarray) and value.dtype == np.float32
            continue
        _, layer, role, _ = name.split(".")
        mod = modules[f"model.layers.{layer}.{HF_LINEARS[role]}"]
        assert isinstance(value, Ternary) and value.values.dtype == np.int8
        w_eff_ours = value.dequantize()
        with no_torch_compile():
            if type(mod).__name__ == "BitLinear":
                from transformers.integrations.bitnet import unpack_weights

                t_hf = unpack_weights(mod.weight, dtype=torch.float32)
                assert np.array_equal(value.values, t_hf.numpy()), name
                w_eff_hf = (t_hf / mod.weight_scale.float()).numpy()  # BitLinear divides by weight_scale
            elif mod.online_quant:
                from transformers.integrations.bitnet import WeightQuant

                w_eff_hf = WeightQuant.apply(mod.weight.detach()).numpy()
                scale_hf = np.abs(w_eff_hf).max()
                assert np.array_equal(value.values, np.rint(w_eff_hf / scale_hf).astype(np.int8)), name
            else:
                w_eff_hf = (mod.weight.detach() * mod.weight_scale).numpy()
                assert np.array_equal(value.values, mod.weight.detach().numpy().astype(np.int8)), name
        np.testing.assert_allclose(w_eff_ours, w_eff_hf, rtol=2.5e-7, atol=0, err_msg=name)


def test_tokenizer_metadata_is_imported():
    bpe = load_hf(case_dir("bitnet-online-h6-gqa-tied")).tokenizer
    assert bpe.model == "gpt2" and bpe.pre == "llama-bpe" and len(bpe.tokens) == 1000
    assert bpe.tokens[bpe.bos_id] == "<|begin_of_text|>" and bpe.tokens[bpe.eos_id] == "<|eot_id|>"
    assert bpe.add_bos and "<|eot_id|>" in bpe.chat_template
    assert bpe.token_types[bpe.bos_id] == TOKEN_CONTROL and bpe.tokens[999] == "[PAD999]"
    assert bpe.merges and all(len(m.split(" ")) == 2 for m in bpe.merges)
    spm = load_hf(case_dir("llama-bitnet-packed")).tokenizer
    assert spm.model == "llama" and spm.bos_id == 1 and spm.eos_id == 2 and spm.unk_id == 0 and spm.add_bos
    assert spm.add_space_prefix is True and len(spm.scores) == len(spm.tokens) == 1000
    assert spm.token_types[3:259] == [6] * 256  # byte-fallback pieces <0x00>..<0xFF>


def test_sharded_checkpoint_and_directory_hash(tmp_path):
    src_dir = case_dir("bitnet-bitlinear-untied")
    d = tmp_path / "sharded"
    shutil.copytree(src_dir, d)
    state = load_file(d / "model.safetensors")
    os.remove(d / "model.safetensors")
    names = sorted(state)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, d / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    a, b = load_hf(src_dir), load_hf(d)
    for (name, x), (_, y) in zip(a.iter_tensors(), b.iter_tensors()):
        if isinstance(x, Ternary):
            assert np.array_equal(x.values, y.values) and x.scale == y.scale, name
        else:
            assert np.array_equal(x, y), name
    assert a.source_sha256 != b.source_sha256 and len(b.source_sha256) == 64


# ---------------------------------------------------------------------------------------------- errors


def clone(tmp_path, case="bitnet-bitlinear-untied"):
    d = tmp_path / "ckpt"
    shutil.copytree(case_dir(case), d)
    return d


def edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


def test_missing_config_and_weights(tmp_path):
    d = clone(tmp_path)
    os.remove(d / "config.json")
    with pytest.raises(BitedgeError, match="missing config.json"):
        load_hf(d)
    d2 = tmp_path / "noweights"
    shutil.copytree(case_dir("bitnet-bitlinear-untied"), d2)
    os.remove(d2 / "model.safetensors")
    with pytest.raises(BitedgeError, match="missing weights"):
        load_hf(d2)
    with pytest.raises(BitedgeError, match="no such checkpoint directory"):
        load_hf(tmp_path / "nothing-here")


def test_truncated_safetensors_names_both_sizes(tmp_path):
    d = clone(tmp_path)
    path = d / "model.safetensors"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(BitedgeError, match=rf"truncated safetensors file: the header says {size} bytes, the file has {size - 1000} bytes"):
        load_hf(d)
    with open(path, "r+b") as f:
        f.truncate(5)
    with pytest.raises(BitedgeError, match="truncated"):
        load_hf(d)


def test_unknown_architecture_is_named(tmp_path):
    d = clone(tmp_path)
    edit_config(d, model_type="mistral", architectures=["MistralForCausalLM"])
    with pytest.raises(BitedgeError, match=r"unsupported architecture MistralForCausalLM \(supported: BitNetForCausalLM"):
        load_hf(d)


def test_missing_tensor_is_named(tmp_path):
    d = clone(tmp_path)
    state = load_file(d / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BitedgeError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight \(for blk\.1\.ffn_up\.weight\)"):
        load_hf(d)
    state = load_file(case_dir("bitnet-bitlinear-untied") + "/model.safetensors")
    del state["model.layers.0.self_attn.q_proj.weight_scale"]
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    src = load_hf(d)  # names are complete; the scale is missed when the tensor is read
    with pytest.raises(BitedgeError, match="weight_scale"):
        src.tensors["blk.0.attn_q.weight"]()


def test_non_ternary_checkpoint_is_refused_with_distance(tmp_path):
    d = tmp_path / "plain"
    make_checkpoint(str(d), Shape(hidden=64, heads=4, kv_heads=2, ffn=96, vocab=300, layers=1), "plain", tokenizer=None)
    with pytest.raises(BitedgeError, match=r"checkpoint is not ternary: tensor model\.layers\.0\.self_attn\.q_proj\.weight has \d+ distinct \|values\| \(max relative error 0\.\d+") as err:
        load_hf(d)
    assert "--force-ternarize" in str(err.value)  # the CLI flag that does it, not the API's keyword
    src = load_hf(d, ternary_check=False)  # explicitly asked: ternarize (lossy)
    assert isinstance(src.tensors["blk.0.attn_q.weight"](), Ternary)


def test_plain_checkpoint_that_is_already_ternary_is_exact(tmp_path):
    d = tmp_path / "unpacked"
    make_checkpoint(str(d), Shape(hidden=64, heads=4, kv_heads=2, ffn=96, vocab=300, layers=1), "plain", tokenizer=None)
    state = load_file(d / "model.safetensors")
    expect = {}
    for name in state:
        if name.endswith(("_proj.weight",)):
            t = torch.from_numpy(np.random.default_rng(len(name)).integers(-1, 2, tuple(state[name].shape)).astype(np.float32))
            state[name] = t * 0.02
            expect[name] = t.numpy()
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    src = load_hf(d)
    q = src.tensors["blk.0.attn_q.weight"]()
    assert np.array_equal(q.values, expect["model.layers.0.self_attn.q_proj.weight"]) and q.scale == np.float32(0.02)


def test_unsupported_options_are_refused(tmp_path):
    d = clone(tmp_path)
    edit_config(d, quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear", "use_rms_norm": True})
    with pytest.raises(BitedgeError, match="use_rms_norm"):
        load_hf(d)
    edit_config(d, quantization_config={"quant_method": "bitnet"}, rope_parameters={"rope_type": "yarn", "rope_theta": 1e4})
    with pytest.raises(BitedgeError, match="RoPE type 'yarn'"):
        load_hf(d)
    edit_config(d, rope_parameters=None, hidden_act="gelu")
    with pytest.raises(BitedgeError, match="hidden_act 'gelu'"):
        load_hf(d)
