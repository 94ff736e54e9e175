"""load_onnx on a tiny random transformers BitNetForCausalLM exported with torch.onnx (dynamo exporter)."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bitedge.convert.hf import canonical_name  # noqa: E402
from bitedge.convert.onnx_import import METADATA_KEY, Graph, config_of_hf_model, export_onnx, load_onnx  # noqa: E402
from bitedge.formats.ternary import ternarize  # noqa: E402
from bitedge.errors import BitedgeError  # noqa: E402
from bitedge.model import Ternary  # noqa: E402


def tiny_bitnet(seed: int = 0):
    cfg = transformers.BitNetConfig(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = transformers.BitNetForCausalLM(cfg).eval()
    with torch.no_grad():  # ternary linears (T * one scale), random norms and embedding: every tensor distinct
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.copy_(torch.randint(-1, 2, p.shape).float() * float(np.float32(rng.uniform(0.01, 0.05))))
            elif p.ndim == 1:
                p.copy_(1 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.02 * torch.randn(p.shape))
    return model


def hf_name(canonical: str, state: dict) -> str:
    base = canonical.removesuffix(".weight")
    return next(k for k in state if canonical_name(k) == (base, "weight") or (base == "token_embd" and k == "model.embed_tokens.weight"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_bitnet()
    path = tmp_path_factory.mktemp("onnx") / "bitnet.onnx"
    export_onnx(model, path)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return model, path, state


def assert_matches_torch(source, state, ternarized=()):
    source.check_complete()
    for name, value in source.iter_tensors():
        want = state[hf_name(name, state)]
        if isinstance(value, Ternary):
            if name in ternarized:
                t = ternarize(want)
                np.testing.assert_array_equal(value.values, t.values, err_msg=name)
                assert value.scale == t.scale
            else:
                np.testing.assert_array_equal(value.dequantize(), want, err_msg=name)
                assert set(np.unique(value.values)) <= {-1, 0, 1}
        else:
            np.testing.assert_array_equal(value, want, err_msg=name)


def test_export_writes_config_and_tensors_round_trip(exported):
    model, path, state = exported
    proto = onnx.load(str(path), load_external_data=False)
    assert METADATA_KEY in {p.key for p in proto.metadata_props}
    # the exporter renamed the linear weights (val_N = W^T): mapping them is the point of this test
    assert not any("q_proj" in i.name for i in proto.graph.initializer)
    source = load_onnx(path)
    assert source.config == config_of_hf_model(model)
    assert source.config.num_kv_heads == 2 and source.config.ffn_act == "relu2" and source.config.tie_embeddings
    assert_matches_torch(source, state)
    assert source.metadata["onnx.ternarized"] == []


def test_external_data_and_hf_config_json(exported, tmp_path):
    model, path, state = exported
    proto = onnx.load(str(path))
    del proto.metadata_props[:]  # no bitedge metadata: the config comes from config.json next to the file
    out = tmp_path / "model.onnx"
    onnx.save_model(proto, str(out), save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").stat().st_size > 0
    with pytest.raises(BitedgeError, match="no model config"):
        load_onnx(out)
    model.config.save_pretrained(tmp_path)
    source = load_onnx(out)
    assert source.config.num_heads == 4 and source.config.head_dim == 16
    assert_matches_torch(source, state)


def test_non_ternary_weight_is_ternarized_with_a_note(exported, tmp_path):
    model, path, state = exported
    proto = onnx.load(str(path))
    graph = Graph(proto)
    _, matmuls, _ = graph.uses()
    init_name, is_w = matmuls[7 * 1 + 5]  # layer 1, ffn_up
    init = graph.inits[init_name]
    rng = np.random.default_rng(3)
    dense = (0.02 * rng.standard_normal(tuple(init.dims))).astype(np.float32)
    init.CopyFrom(onnx.numpy_helper.from_array(dense, init_name))
    out = tmp_path / "dense.onnx"
    onnx.save_model(proto, str(out))
    state = dict(state)
    state["model.layers.1.mlp.up_proj.weight"] = dense if is_w else dense.T.copy()
    source = load_onnx(out)
    assert_matches_torch(source, state, ternarized={"blk.1.ffn_up.weight"})
    assert source.metadata["onnx.ternarized"] == ["blk.1.ffn_up.weight"]


def test_config_that_does_not_fit_the_graph(exported, tmp_path):
    model, path, state = exported
    proto = onnx.load(str(path), load_external_data=False)
    cfg = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    cfg["num_layers"] = 1
    proto.metadata_props[0].value = json.dumps(cfg)
    out = tmp_path / "wrong.onnx"
    onnx.save_model(proto, str(out))
    with pytest.raises(BitedgeError, match="the graph has 15 weight matmuls, the config implies 8"):
        load_onnx(out)


def test_bad_files(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(BitedgeError, match="not a readable ONNX model"):
        load_onnx(tmp_path / "x.onnx")
    with pytest.raises(BitedgeError, match="no such file"):
        load_onnx(tmp_path / "absent.onnx")


# ---------------------------------------------------------------------------------------------- TorchScript exporter


class _RMSNorm(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(1 + 0.1 * torch.randn(n))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


class _Attention(torch.nn.Module):
    def __init__(self, h, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.d = heads, kv_heads, h // heads
        self.q_proj = torch.nn.Linear(h, h, bias=False)
        self.k_proj = torch.nn.Linear(h, kv_heads * self.d, bias=False)
        self.v_proj = torch.nn.Linear(h, kv_heads * self.d, bias=False)
        self.attn_sub_norm = _RMSNorm(h)
        self.o_proj = torch.nn.Linear(h, h, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.d).transpose(1, 2).repeat_interleave(self.heads // self.kv_heads, 1)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.d).transpose(1, 2).repeat_interleave(self.heads // self.kv_heads, 1)
        a = torch.softmax(q @ k.transpose(-1, -2) / self.d**0.5, dim=-1) @ v
        return self.o_proj(self.attn_sub_norm(a.transpose(1, 2).reshape(b, t, -1)))


class _MLP(torch.nn.Module):
    def __init__(self, h, f):
        super().__init__()
        self.gate_proj = torch.nn.Linear(h, f, bias=False)
        self.up_proj = torch.nn.Linear(h, f, bias=False)
        self.ffn_sub_norm = _RMSNorm(f)
        self.down_proj = torch.nn.Linear(f, h, bias=False)

    def forward(self, x):
        return self.down_proj(self.ffn_sub_norm(torch.relu(self.gate_proj(x)) ** 2 * self.up_proj(x)))


class _Layer(torch.nn.Module):
    def __init__(self, h, f, heads, kv_heads):
        super().__init__()
        self.input_layernorm = _RMSNorm(h)
        self.self_attn = _Attention(h, heads, kv_heads)
        self.post_attention_layernorm = _RMSNorm(h)
        self.mlp = _MLP(h, f)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class _Body(torch.nn.Module):
    def __init__(self, v, h, f, layers, heads, kv_heads):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(v, h)
        self.layers = torch.nn.ModuleList(_Layer(h, f, heads, kv_heads) for _ in range(layers))
        self.norm = _RMSNorm(h)


class TinyBitNet(torch.nn.Module):
    """transformers' BitNetForCausalLM parameter names and evaluation order, without RoPE (names and order are
    what load_onnx relies on), small enough for the TorchScript exporter (which cannot export transformers' masks)."""

    def __init__(self, v=80, h=64, f=128, layers=2, heads=4, kv_heads=2, tied=False):
        super().__init__()
        self.model = _Body(v, h, f, layers, heads, kv_heads)
        self.lm_head = torch.nn.Linear(h, v, bias=False)
        if tied:
            self.lm_head.weight = self.model.embed_tokens.weight
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):
                    p.copy_(torch.randint(-1, 2, p.shape).float() * 0.03125)

    def forward(self, input_ids, use_cache=False):
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x)
        return type("Out", (), {"logits": self.lm_head(self.model.norm(x))})


@pytest.mark.parametrize("folding,tied", [(True, False), (False, True)])
def test_torchscript_exporter(tmp_path, folding, tied):
    """Constant folding names the weights onnx::MatMul_N (W^T); without it they keep their names behind a Transpose."""
    from bitedge.model import ModelConfig

    torch.manual_seed(1)
    model = TinyBitNet(tied=tied).eval()
    config = ModelConfig(vocab_size=80, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                         head_dim=16, tie_embeddings=tied, ffn_act="relu2", sub_norms=True)
    path = tmp_path / "ts.onnx"
    export_onnx(model, path, config=config, dynamo=False, do_constant_folding=folding)
    names = [i.name for i in onnx.load(str(path), load_external_data=False).graph.initializer]
    assert any(n.startswith("onnx::MatMul") for n in names) == folding
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    source = load_onnx(path)
    assert source.config == config
    assert_matches_torch(source, {**state, "output.weight": state["lm_head.weight"]} if not tied else state)
