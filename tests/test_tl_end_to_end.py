"""TL1 and TL2 models end to end in the C runtime: one bitedge-run (TL kernels rendered into every build, here
specialised to the model's shapes) runs one random model of odd shapes written as i2_s, tl1 and tl2.

Integer products are exact in every layout, so at the same kernel table and thread count the three files give the
same greedy tokens and bit-identical logits; the i2_s run itself agrees with the numpy reference (as in
test_native_lossless). Natively (best table and BITEDGE_KERNELS=scalar, 1 and 2 threads, prompt in batches and
token by token) and on rpi5-qemu under qemu-aarch64 (NEON). Prompt batches go through the TL gemm (forward.c uses it
whenever a batch holds more than one token): batch 8 on the 21-token prompt gives calls of 8, 8 and 5 tokens, batch 7
three of 7 (a full block of bitedge.render.GEMM_TOKENS = 4 and a 3-token tail); generation steps use the gemv."""

from __future__ import annotations

import json

import pytest

from _c_build import have_tool
from _runtime_helpers import generate_checked
from bitedge.builder.compile import build_runtime
from bitedge.targets import get_target
from bitedge.builder.toolchains import detect_toolchain
from bitedge.convert.gguf_writer import write_gguf
from bitedge.gguf_read import read_model
from bitedge.model import ModelConfig
from bitedge.native import read_logits, run_generate
from bitedge.reference import Reference

PACKINGS = ("i2_s", "tl1", "tl2")
# K in {160, 110, 200}: none a multiple of 3 (TL2 pads the last triple) nor of 128 (I2_S pads a block);
# N in {110, 22, 200} not multiples of 32 (a partial last tile), 160 whole tiles; 5 query heads on 1 kv head
CONFIG = ModelConfig(vocab_size=301, hidden_size=160, intermediate_size=200, num_layers=2, num_heads=5,
                     num_kv_heads=1, head_dim=22, context_length=96, tie_embeddings=False, ffn_act="relu2",
                     sub_norms=True, name="tl-odd")
PROMPT = [(i * 37 + 11) % 300 for i in range(21)]  # 21 > batch 8 below: several prompt chunks
N_GEN = 6


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("tl-models")
    source = tiny_model(CONFIG, seed=31, draw="scaled", tokenizer=None)
    paths = {}
    for packing in PACKINGS:
        paths[packing] = d / f"odd-{packing}.gguf"
        write_gguf(source, paths[packing], packing=packing, embed_type="f16")
    return paths


@pytest.fixture(scope="module")
def native_tl(tmp_path_factory, models):
    out = tmp_path_factory.mktemp("tl-native")
    return build_runtime("x86-64-avx2", model=models["tl1"], out_dir=out, toolchain="gcc",
                         cache_dir=out / "cache").binary


def generate(binary, path, tmp_path, tag, **kw):
    dump = tmp_path / f"{tag}.f32"
    result = run_generate(binary, path, tokens=PROMPT, n=N_GEN, dump_logits=dump, **kw)
    return result["tokens"], read_logits(dump, result["vocab_size"]), result


def assert_same(runs):
    """Every packing's run equals i2_s's: tokens and logits bit for bit."""
    tokens, logits, _ = runs["i2_s"]
    for packing in PACKINGS[1:]:
        assert runs[packing][0] == tokens, f"{packing}: tokens {runs[packing][0]} != i2_s {tokens}"
        assert runs[packing][1].tobytes() == logits.tobytes(), f"{packing}: logits differ from i2_s"


@pytest.mark.parametrize("kernels", [None, "scalar"], ids=["best", "scalar"])
@pytest.mark.parametrize("threads", [1, 2])
def test_tl_equals_i2s_bit_for_bit(native_tl, models, tmp_path, threads, kernels):
    runs = {p: generate(native_tl, models[p], tmp_path, f"{p}", threads=threads, kernels=kernels, batch=8)
            for p in PACKINGS}
    assert_same(runs)
    if kernels:
        assert all(r[2]["kernels"] == kernels for r in runs.values())
    if threads == 1 and kernels is None:
        reference = Reference(read_model(models["i2_s"]))
        generate_checked(native_tl, models["i2_s"], reference, PROMPT, tmp_path, "i2_s-checked", n=N_GEN, batch=8)


def test_tl_threads_and_batch_do_not_change_results(native_tl, models, tmp_path):
    """Token by token (gemv only) and in batches of 7 (gemm blocks of GEMM_TOKENS tokens and a 3-token tail) give
    the bits of the default batch (the whole 21-token prompt in one gemm call)."""
    for packing in ("tl1", "tl2"):
        t1, l1, _ = generate(native_tl, models[packing], tmp_path, "t1", threads=1)
        t2, l2, _ = generate(native_tl, models[packing], tmp_path, "t2b1", threads=2, batch=1)
        assert t1 == t2 and l1.tobytes() == l2.tobytes(), packing
        t3, l3, _ = generate(native_tl, models[packing], tmp_path, "t2b7", threads=2, batch=7)
        assert t1 == t3 and l1.tobytes() == l3.tobytes(), packing


@pytest.mark.parametrize("kernels", [None, "scalar"], ids=["best", "scalar"])
def test_tl_matches_reference(native_tl, models, tmp_path, kernels):
    """The TL runs against the numpy reference of their own file (its unpacked weights), by the exact check:
    prompt through the TL gemm in batches of 8 (and whole), generation through the gemv."""
    for packing in ("tl1", "tl2"):
        reference = Reference(read_model(models[packing]))
        for batch in (None, 8):
            generate_checked(native_tl, models[packing], reference, PROMPT, tmp_path, f"{packing}-{batch}", n=N_GEN,
                             threads=2, batch=batch, kernels=kernels)


def test_a_runtime_built_without_a_model_runs_every_packing_on_the_generic_path(native_tl, models, tmp_path):
    """One runtime: a build for no model in particular (the TL kernels' generic path, any K) runs tl1 and tl2 files
    and gives the bits of the build specialised to their shapes."""
    out = tmp_path / "plain"
    plain = build_runtime("x86-64-avx2", out_dir=out, toolchain="gcc", cache_dir=out / "cache").binary
    for packing in PACKINGS:
        a = generate(plain, models[packing], tmp_path, f"plain-{packing}", threads=2, batch=8)
        b = generate(native_tl, models[packing], tmp_path, f"special-{packing}", threads=2, batch=8)
        assert a[0] == b[0] and a[1].tobytes() == b[1].tobytes(), packing


def test_rpi5_qemu_tl_equals_i2s(models, tmp_path):
    target = get_target("rpi5-qemu")
    if not have_tool("qemu-aarch64") or detect_toolchain("gcc-cross", target.arch) is None:
        pytest.skip("needs qemu-aarch64 and aarch64-linux-gnu-gcc")
    binary = build_runtime(target, model=models["tl2"], out_dir=tmp_path / "arm", toolchain="gcc-cross",
                           cache_dir=tmp_path / "cache").binary
    runs = {p: generate(binary, models[p], tmp_path, f"arm-{p}", threads=2, batch=8, runner=target.runner)
            for p in PACKINGS}
    assert runs["tl1"][2]["kernels"] == "neon-dotprod"
    assert_same(runs)
    reference = Reference(read_model(models["tl2"]))
    generate_checked(binary, models["tl2"], reference, PROMPT, tmp_path, "arm-tl2-checked", n=N_GEN, threads=2,
                     batch=8, runner=target.runner)


def test_cli_build_with_a_tl_model_links_the_tl_kernels(models, tmp_path):
    """`bitedge build --model m-tl1.gguf` builds a runtime with TL kernels specialised to the model's shapes."""
    import os
    import subprocess
    import sys

    from bitedge.builder.cache import CACHE_DIR_ENV

    env = {**os.environ, CACHE_DIR_ENV: str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bitedge.cli", "build", str(models["tl1"]), "--target", "x86-64-avx2",
                           "--toolchain", "gcc", "--out-dir", str(tmp_path / "out"), "--json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    manifest = json.loads((tmp_path / "out" / "bitedge-run.manifest.json").read_text())
    rendered = [i["path"] for i in manifest["inputs"] if i["path"].endswith("bitedge_tl1_avx2.c")]
    assert len(rendered) == 1
    assert "_k160_" in (tmp_path / "out" / "kernels" / "bitedge_tl1_avx2.c").read_text()  # specialised to K = 160
    assert len(run_generate(info["binary"], models["tl1"], tokens=[1, 2], n=2)["tokens"]) == 2


def test_tl_runtime_is_sanitizer_clean(models, tmp_path):
    """ASan + UBSan over a TL build (runtime sources + rendered kernels, -Werror), on the odd model and on one whose
    widest K is a multiple of 128 but not of 3 (the TL2 row, 258 > 256, outgrows I2_S's padding)."""
    from _c_build import compile_c, run_binary, sanitizer_report
    from _runtime_helpers import EXTRA_FLAGS, RUNTIME
    from bitedge.builder.compile import render_tl_kernels, runtime_sources
    from bitedge.convert.dummy import dummy_source
    from bitedge.render import model_shapes

    round_k = dummy_source("test", seed=3)
    kernels_dir = tmp_path / "kernels"
    rendered = render_tl_kernels(get_target("x86-64-avx2"), model_shapes(CONFIG) + model_shapes(round_k.config),
                                 kernels_dir)
    binary = compile_c([*runtime_sources(), *rendered], tmp_path / "bitedge-run-asan", sanitize=True,
                       include_dirs=[RUNTIME, kernels_dir], flags=EXTRA_FLAGS)
    round_paths = {}
    for packing in PACKINGS:
        round_paths[packing] = tmp_path / f"round-{packing}.gguf"
        write_gguf(round_k, round_paths[packing], packing=packing, embed_type="f32")
    tokens = ",".join(str(t) for t in PROMPT)
    results = {}
    for name, paths in (("odd", models), ("round", round_paths)):
        for packing in PACKINGS:
            for kernels in ("avx2", "scalar"):
                proc = run_binary(binary, ["generate", "-m", paths[packing], "--tokens", tokens, "-n", "3", "--temp",
                                           "0", "--ignore-eos", "-t", "2", "-b", "8", "--json"], timeout=300,
                                  env={"BITEDGE_KERNELS": kernels})
                assert sanitizer_report(proc) is None, f"{name} {packing}: {sanitizer_report(proc)}"
                assert proc.returncode == 0, f"{name} {packing}: {proc.stderr[-300:]}"
                results[name, packing, kernels] = proc.stdout
    for name in ("odd", "round"):  # same greedy tokens in every layout and table (float logits only differ in gemv)
        first = json.loads(results[name, "i2_s", "avx2"][results[name, "i2_s", "avx2"].rfind("\n{") + 1:])["tokens"]
        for key, out in results.items():
            if key[0] == name:
                assert json.loads(out[out.rfind("\n{") + 1:])["tokens"] == first, key
