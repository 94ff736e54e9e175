"""The model description contract shared by importers and writers."""

import numpy as np
import pytest

from bitedge.errors import BitedgeError
from bitedge.model import ModelConfig, ModelSource, Ternary, is_ternary, tensor_role


def small_config(**kw):
    base = dict(vocab_size=1000, hidden_size=96, intermediate_size=344, num_layers=2, num_heads=6, num_kv_heads=2, head_dim=16)
    base.update(kw)
    return ModelConfig(**base)


def test_tensor_shapes_follow_gqa_and_tying():
    cfg = small_config(tie_embeddings=False, sub_norms=True)
    shapes = cfg.tensor_shapes()
    assert shapes["blk.1.attn_q.weight"] == (96, 96)
    assert shapes["blk.1.attn_k.weight"] == (32, 96)
    assert shapes["blk.0.ffn_down.weight"] == (96, 344)
    assert shapes["blk.0.attn_sub_norm.weight"] == (96,)
    assert shapes["output.weight"] == (1000, 96)
    tied = small_config(tie_embeddings=True, sub_norms=False).tensor_shapes()
    assert "output.weight" not in tied and "blk.0.ffn_sub_norm.weight" not in tied
    assert sum(is_ternary(n) for n in shapes) == 7 * cfg.num_layers
    assert tensor_role("blk.12.ffn_gate.weight") == "ffn_gate" and tensor_role("token_embd.weight") == "token_embd"


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(num_kv_heads=4), "not a multiple"),
        (dict(head_dim=15), "even"),
        (dict(ffn_act="gelu"), "unsupported FFN activation"),
        (dict(hidden_size=0), "hidden_size"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(kw, message):
    with pytest.raises(BitedgeError, match=message):
        small_config(**kw).validate()


def test_iter_tensors_checks_shapes():
    cfg = small_config(num_layers=1)
    tensors = {}
    for name, shape in cfg.tensor_shapes().items():
        if is_ternary(name):
            tensors[name] = lambda s=shape: Ternary(np.zeros(s, np.int8), 0.5)
        else:
            tensors[name] = lambda s=shape: np.zeros(s, np.float32)
    src = ModelSource(cfg, tensors, source="unit")
    src.check_complete()
    assert len(list(src.iter_tensors())) == len(tensors)
    tensors["blk.0.attn_q.weight"] = lambda: Ternary(np.zeros((3, 3), np.int8), 1.0)
    with pytest.raises(BitedgeError, match="blk.0.attn_q.weight has shape"):
        list(src.iter_tensors())
    del tensors["output_norm.weight"]
    with pytest.raises(BitedgeError, match="missing tensor output_norm.weight"):
        src.check_complete()
