"""`bitedge demo`: the bundled model through the whole flow, offline, every runtime run proven lossless."""

from __future__ import annotations

import json
import shutil

import pytest

from bitedge.cli import main
from bitedge.demo import BUNDLED, run_demo


def test_bundled_model_ships_with_its_tokenizer_and_card():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "training.json"):
        assert (BUNDLED / name).is_file(), name
    card = json.loads((BUNDLED / "training.json").read_text())
    assert card["parameters"] > 1_000_000 and card["val_perplexity_bf16_master_ternary_forward"] > 1


@pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-user is not installed")
def test_demo_cli_runs_and_all_engines_agree(tmp_path, capsys):
    rc = main(["demo", "--out-dir", str(tmp_path), "-n", "24", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    runs = out["runs"]
    assert set(runs) == {"reference (numpy)", "x86-64-avx2 (native)", "rpi5-qemu (qemu)"} or len(runs) == 3
    # run_demo raises LosslessError unless both runtime runs pass the exact check; each says so
    assert set(out["lossless"]) == set(runs) - {"reference (numpy)"}
    assert all("codes" in summary for summary in out["lossless"].values())
    assert all(len(r["tokens"]) == 24 for r in runs.values())
    # the bundled model writes recognisable English (KJV vocabulary), not byte soup
    text = runs["reference (numpy)"]["text"]
    assert sum(w.lower() in text.lower().split() for w in ("the", "and", "of", "unto", "lord", "god", "he", "shall")) >= 2, text
    assert {row["n_prompt"] or row["n_gen"] for row in out["bench"]} and all(row["avg_ts"] > 0 for row in out["bench"])


def test_demo_refuses_a_missing_model(tmp_path, capsys):
    rc = main(["demo", str(tmp_path / "nope"), "--out-dir", str(tmp_path)])
    assert rc == 2 and "Traceback" not in capsys.readouterr().err


def test_run_demo_on_another_checkpoint(tmp_path):
    from bitedge.convert.dummy import dummy_source
    from bitedge.convert.gguf_writer import write_gguf

    model = tmp_path / "dummy.gguf"
    write_gguf(dummy_source("test", seed=9), model)
    if shutil.which("qemu-aarch64") is None:
        pytest.skip("qemu-user is not installed")
    result = run_demo(model=model, workdir=tmp_path / "w", n_tokens=8, bench_reps=1)
    assert len(result.runs) == 3 and len(result.lossless) == 2
