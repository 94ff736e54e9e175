"""`bitedge kernels` and `bitedge tune` from the command line."""

import json

from bitedge.cli import main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import write_gguf


def test_kernels_renders_per_target_and_method(tmp_path, capsys):
    model = tmp_path / "m.gguf"
    write_gguf(dummy_source("test"), model)
    # no --method: the profile's method when it is a TL one, else tl1 (rpi4 defaults to the hand-written i2_s)
    for target, method, isa in (("rpi5", "tl1", "neon"), ("x86-64-avx2", "tl2", "avx2"), ("rpi4", None, "neon")):
        out = tmp_path / f"{target}-{method}"
        assert main(["kernels", str(model), "--target", target, *(["--method", method] if method else []),
                     "--out-dir", str(out), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        names = {p.split("/")[-1] for p in info["files"]}
        method = method or "tl1"
        assert info["method"] == method
        tag = method
        assert f"bitedge_{tag}_{isa}.c" in names and "bitedge_layouts.h" in names
        assert sorted(map(tuple, info["shapes"])) == [(128, 256), (256, 256), (256, 512), (512, 256)]
        text = (out / f"bitedge_{tag}_{isa}.c").read_text()
        # specialised to the model's (padded) row lengths: 256 and 512 (TL2 pads K to a multiple of 3)
        ks = {256: 258, 512: 513} if method == "tl2" else {256: 256, 512: 512}
        assert all(f"_k{kp}_" in text for kp in ks.values()), method
    assert main(["kernels", str(model), "--target", "nope"]) == 2
    # I2_S is not rendered (bitedge-run's hand-written kernels are its one implementation): not offered
    assert main(["kernels", str(model), "--target", "rpi4", "--method", "i2_s", "--out-dir", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_tune_measures_and_caches(tmp_path, capsys):
    model = tmp_path / "m.gguf"
    write_gguf(dummy_source("test"), model)
    cache = tmp_path / "tuning.json"
    rc = main(["tune", str(model), "--target", "x86-64-avx2", "--method", "tl1", "--reps", "2",
               "--cache", str(cache), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    result = out["results"]
    assert result and all(r["mean_ns"] > 0 and r["tiles"] and r["where"] == "this machine" for r in result.values())
    assert len(json.loads(cache.read_text())["entries"]) == len(result) == 4
    # per token: every shape's best time times how many matrices have it (test preset: 2 layers, 7 per layer)
    counts = {(128, 256): 4, (256, 256): 4, (256, 512): 2, (512, 256): 4}
    assert out["fastest"]["method"] == "tl1" and out["profile_method"] == "i2_s"
    expected = sum(result[f"tl1/{n}x{k}"]["mean_ns"] * c for (n, k), c in counts.items())
    assert abs(out["fastest"]["token_ns"]["tl1"] - expected) < 1e-6 * expected
