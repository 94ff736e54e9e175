"""Cross-compilation, the manifest, the cache and reproducibility.

A small C program (tests/_build_helpers.py: pthreads, the profile's SIMD intrinsics, the BITEDGE_REQUIRE_*
check) is built for every shipped Linux target and run natively or under qemu-aarch64 with the board's CPU;
the real runtime (kernels/runtime) is built for x86-64 (gcc), the Pi 5 (zig, musl) and macOS (zig, Mach-O).
zig's musl libc is built once per architecture into ~/.cache/bitedge/zig (or $BITEDGE_ZIG_CACHE), kept across
sessions: the first session on a machine takes about a minute longer.
"""

from __future__ import annotations

import json
import struct
import subprocess

import pytest

import bitedge.builder.compile as compile_mod
from bitedge.builder.compile import build_runtime
from bitedge.targets import load_targets
from bitedge.builder.toolchains import detect_toolchain, host_arch
from bitedge.errors import BitedgeError

from _build_helpers import PROBE_DOT, QEMU_CPU, have, write_probe, zig_session_cache

zig_session_cache()
HAVE_ZIG = detect_toolchain("zig") is not None
needs_zig = pytest.mark.skipif(not HAVE_ZIG, reason="ziglang not installed")
needs_qemu = pytest.mark.skipif(not have("qemu-aarch64"), reason="no qemu-aarch64 (apt install qemu-user)")
LINUX_TARGETS = sorted(t.id for t in load_targets().values() if t.os == "linux")


@pytest.fixture(scope="module")
def probe_src(tmp_path_factory):
    return write_probe(tmp_path_factory.mktemp("probe"))


def run_for(target, binary, cpu=None):
    """Run binary the way the target's board would: natively, under its runner, or under qemu as its CPU."""
    if target.arch == host_arch() and target.runner is None and cpu is None:
        argv = [str(binary)]
    else:
        argv = ["qemu-aarch64", "-cpu", cpu or (target.runner[2] if target.runner else QEMU_CPU[target.id]),
                str(binary)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def host_has(feature: str) -> bool:
    flags = open("/proc/cpuinfo").read()
    return f" {feature}" in flags


@needs_qemu
@pytest.mark.parametrize("tid", LINUX_TARGETS)
def test_every_linux_target_builds_and_runs(tid, probe_src, tmp_path):
    target = load_targets()[tid]
    tc = "gcc-cross" if target.arch == "aarch64" else "gcc"
    if detect_toolchain(tc, target.arch) is None:
        pytest.skip(f"no {tc}")
    res = build_runtime(target, toolchain=tc, sources=[probe_src], out_dir=tmp_path / "out", cache_dir=tmp_path / "c")
    head = res.binary.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == {"aarch64": 0xB7, "x86_64": 0x3E}[target.arch]
    proc = run_for(target, res.binary)
    if "avx512f" in target.isa and not host_has("avx512f"):
        assert proc.returncode == 3 and "needs avx512f" in proc.stderr  # refused with a message, not SIGILL
        return
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"arch={target.arch}", f"target={tid}", f"dot={PROBE_DOT}"]


@needs_qemu
def test_dotprod_build_refuses_a_cpu_without_dotprod(probe_src, tmp_path):
    res = build_runtime("rpi5", toolchain="gcc-cross", sources=[probe_src], out_dir=tmp_path, cache_dir=tmp_path / "c")
    proc = run_for(load_targets()["rpi5"], res.binary, cpu="cortex-a72")
    # the Cortex-A72 lacks both fp16 arithmetic and dotprod; the probe names the first it checks
    assert proc.returncode == 3 and ("needs dotprod" in proc.stderr or "needs fp16" in proc.stderr), proc.stderr


@needs_zig
@needs_qemu
def test_zig_builds_static_musl_for_aarch64(probe_src, tmp_path):
    said = []
    res = build_runtime("rpi5-qemu", toolchain="zig", sources=[probe_src], out_dir=tmp_path, cache_dir=tmp_path / "c",
                        progress=said.append)
    # a cold zig link is silent for minutes while zig builds libc: the progress line says why
    assert any("link" in m and "zig builds the target's libc once" in m for m in said), said
    m = res.manifest_data()
    assert m["toolchain"]["id"] == "zig" and m["toolchain"]["static"] is True
    assert "-mcpu=cortex_a76" in m["compile_flags"] and "aarch64-linux-musl" in m["compile_flags"]
    proc = run_for(load_targets()["rpi5-qemu"], res.binary)
    assert proc.returncode == 0 and f"dot={PROBE_DOT}" in proc.stdout, proc.stderr


def assert_macho_arm64(path):
    magic, cputype = struct.unpack_from("<II", path.read_bytes(), 0)
    assert magic == 0xFEEDFACF and cputype == 0x0100000C  # MH_MAGIC_64, CPU_TYPE_ARM64


@needs_zig
def test_macos_build_is_macho_arm64(probe_src, tmp_path):
    res = build_runtime("apple-m2", sources=[probe_src], out_dir=tmp_path, cache_dir=tmp_path / "c")
    assert res.toolchain.id == "zig"
    assert_macho_arm64(res.binary)
    assert "-mcpu=apple_m2" in res.manifest_data()["compile_flags"]


def test_manifest_cache_hit_and_clean(probe_src, tmp_path, monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=out, cache_dir=cache,
                          defines=["EXTRA=1"])
    m = first.manifest_data()
    assert not first.cached and m["target"] == "x86-64-avx2" and m["toolchain"]["id"] == "gcc"
    assert m["output"]["sha256"] == compile_mod.file_sha256(first.binary)
    assert [i["path"] for i in m["inputs"]][0].endswith("probe.c")
    assert "-DEXTRA=1" in m["compile_flags"] and "-DBITEDGE_REQUIRE_AVX2=1" in m["compile_flags"]
    assert (out / "build.log").read_text().count("$ ") == 2  # one compile, one link
    assert not list(out.glob(".*"))  # no temporary files left behind

    def no_compiler(*a, **k):
        raise AssertionError("the compiler ran on a cache hit")

    monkeypatch.setattr(compile_mod, "_run_logged", no_compiler)
    again = build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=out, cache_dir=cache,
                          defines=["EXTRA=1"])
    assert again.cached and again.key == first.key
    # another folder: served from the store
    other = build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=tmp_path / "o2", cache_dir=cache,
                          defines=["EXTRA=1"])
    assert other.cached and other.binary.read_bytes() == first.binary.read_bytes()
    # any input change is a miss: a define, a source byte, --clean
    with pytest.raises(AssertionError, match="compiler ran"):
        build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=out, cache_dir=cache, defines=["EXTRA=2"])
    with pytest.raises(AssertionError, match="compiler ran"):
        build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=out, cache_dir=cache,
                      defines=["EXTRA=1"], clean=True)
    probe_src.write_text(probe_src.read_text() + "\n/* changed */\n")
    try:
        with pytest.raises(AssertionError, match="compiler ran"):
            build_runtime("x86-64-avx2", toolchain="gcc", sources=[probe_src], out_dir=out, cache_dir=cache,
                          defines=["EXTRA=1"])
    finally:
        probe_src.write_text(probe_src.read_text().replace("\n/* changed */\n", ""))


def test_a_damaged_binary_is_rebuilt(probe_src, tmp_path):
    kw = dict(toolchain="gcc", sources=[probe_src], out_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    first = build_runtime("x86-64-avx2", **kw)
    first.binary.write_bytes(b"garbage")
    for entry in (tmp_path / "cache").glob("*/*/bitedge-run"):
        entry.write_bytes(b"garbage")
    again = build_runtime("x86-64-avx2", **kw)
    assert not again.cached and again.binary.read_bytes()[:4] == b"\x7fELF"


def test_compile_error_names_first_error_and_log(tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared_thing; }\n")
    with pytest.raises(BitedgeError) as err:
        build_runtime("x86-64-avx2", toolchain="gcc", sources=[bad], out_dir=tmp_path / "out", cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "compiling bad.c" in msg and "undeclared_thing" in msg and "error" in msg
    log = tmp_path / "out" / "build.log"
    assert f"full log: {log}" in msg and "undeclared_thing" in log.read_text()
    assert not (tmp_path / "out" / "bitedge-run").exists() and not list((tmp_path / "out").glob(".*"))
    with pytest.raises(BitedgeError, match="source file not found"):
        build_runtime("x86-64-avx2", toolchain="gcc", sources=[tmp_path / "nope.c"], out_dir=tmp_path / "o")


REPRODUCIBLE = [("x86-64-avx2", "gcc"), ("rpi5", "gcc-cross"), ("rpi5", "zig"), ("apple-m1", "zig"),
                ("rpi4", "clang-cross")]


@pytest.mark.parametrize("tid,tc", REPRODUCIBLE)
def test_same_inputs_same_bytes(tid, tc, probe_src, tmp_path, monkeypatch):
    if detect_toolchain(tc, load_targets()[tid].arch) is None:
        pytest.skip(f"no {tc}")
    # zig cc reuses objects it compiled before: give each build its own object cache so both really compile
    monkeypatch.setenv("BITEDGE_ZIG_LOCAL_CACHE", str(tmp_path / "zig-a"))
    a = build_runtime(tid, toolchain=tc, sources=[probe_src], out_dir=tmp_path / "a", cache_dir=tmp_path / "ca", clean=True)
    monkeypatch.setenv("BITEDGE_ZIG_LOCAL_CACHE", str(tmp_path / "zig-b"))
    b = build_runtime(tid, toolchain=tc, sources=[probe_src], out_dir=tmp_path / "deeper" / "b", cache_dir=tmp_path / "cb",
                      clean=True)
    assert not a.cached and not b.cached
    assert a.binary.read_bytes() == b.binary.read_bytes()


# --- the real runtime -------------------------------------------------------------------------------------


def test_runtime_x86_64_builds_runs_and_is_reproducible(tmp_path):
    res = build_runtime("x86-64-avx2", toolchain="gcc", out_dir=tmp_path / "a", cache_dir=tmp_path / "c")
    names = {i["path"] for i in res.manifest_data()["inputs"]}
    assert {"kernels/runtime/main.c", "kernels/runtime/kernels.h"} <= names
    proc = subprocess.run([str(res.binary), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "usage: bitedge-run" in proc.stdout
    again = build_runtime("x86-64-avx2", toolchain="gcc", out_dir=tmp_path / "b", cache_dir=tmp_path / "c2")
    assert not again.cached
    if again.manifest_data()["inputs"] == res.manifest_data()["inputs"]:  # nobody edited the runtime meanwhile
        assert again.binary.read_bytes() == res.binary.read_bytes()


@pytest.fixture(scope="module")
def pi5_runtime(tmp_path_factory):
    """The real runtime for rpi5-qemu, built with zig (static musl)."""
    if not (HAVE_ZIG and have("qemu-aarch64")):
        pytest.skip("needs zig and qemu-aarch64")
    out = tmp_path_factory.mktemp("pi5")
    return build_runtime("rpi5-qemu", toolchain="zig", out_dir=out, cache_dir=out / "cache")


def test_runtime_for_pi5_under_qemu_and_refused_by_a_pi4_cpu(pi5_runtime):
    target = load_targets()["rpi5-qemu"]
    proc = subprocess.run([*target.runner, str(pi5_runtime.binary), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and "usage: bitedge-run" in proc.stdout, proc.stderr
    proc = subprocess.run(["qemu-aarch64", "-cpu", "cortex-a72", str(pi5_runtime.binary), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and "DOTPROD" in proc.stderr  # the runtime's start-up check, not SIGILL


def test_runtime_for_pi5_generates_the_reference_tokens_under_qemu(pi5_runtime, tmp_path):
    dummy = pytest.importorskip("bitedge.convert.dummy")
    writer = pytest.importorskip("bitedge.convert.gguf_writer")
    reference = pytest.importorskip("bitedge.reference")
    source = dummy.dummy_source("test", seed=5)
    model = tmp_path / "test.gguf"
    writer.write_gguf(source, model, packing="i2_s", embed_type="f32")
    prompt = [1, 17, 42, 99, 7]
    from _runtime_helpers import generate_checked

    _, _, result, _ = generate_checked(pi5_runtime.binary, model, reference.Reference(source), prompt, tmp_path, "pi5",
                                       n=5, runner=load_targets()["rpi5-qemu"].runner)
    assert "kernels = neon-dotprod" in result["stderr"]  # built for the A76: the dotprod kernels ran


@needs_zig
def test_runtime_for_macos_is_macho_arm64(tmp_path):
    res = build_runtime("apple-m1", out_dir=tmp_path, cache_dir=tmp_path / "c")
    assert_macho_arm64(res.binary)
    assert json.loads(res.manifest.read_text())["toolchain"]["static"] is False


def test_two_threads_building_one_target_take_turns(tmp_path, monkeypatch):
    """A fleet of two boards on one profile, first build: two threads of one process build the same target into
    the same work folder against an empty cache (issue #17: they collided on the manifest's temporary name). One
    compiles, the other waits and is a cache hit; no compile overlaps another, nothing half-written is left."""
    if host_arch() != "x86_64" or detect_toolchain("gcc") is None:
        pytest.skip("needs an x86-64 host with gcc")
    import threading
    import time

    from bitedge import api

    monkeypatch.setenv("BITEDGE_BUILD_CACHE", str(tmp_path / "cache"))
    inside, most = [0], [0]
    guard = threading.Lock()
    real = compile_mod._compile_and_link

    def counted(*args, **kw):  # the real compile and link, noting how many run at once
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(1.0)  # both threads are surely in by now, were they not kept apart
            return real(*args, **kw)
        finally:
            with guard:
                inside[0] -= 1

    monkeypatch.setattr(compile_mod, "_compile_and_link", counted)
    start = threading.Barrier(2)
    results, errors, said = [None, None], [], []

    def build(i):
        try:
            start.wait(timeout=30)
            results[i] = api.build(api.resolve_target("x86-64-avx2"), None, say=said.append, toolchain="gcc")
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert most[0] == 1, "two builds into one folder ran at once"
    assert sorted(r.cached for r in results) == [False, True]
    assert results[0].binary == results[1].binary and results[0].key == results[1].key
    assert json.loads(results[0].manifest.read_text())["output"]["sha256"] == compile_mod.file_sha256(results[0].binary)
    assert any("waiting for another build" in m for m in said), said
    assert not list((tmp_path / "cache").rglob("*partial*"))
    proc = subprocess.run([str(results[0].binary), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: bitedge-run" in proc.stdout, proc.stderr


def test_the_build_lock_keeps_another_process_out(tmp_path):
    """Another process building into the same folder (two bitedge commands at once) is waited for: an flock on a
    file in the cache, released when that process lets go (or dies)."""
    import sys
    import time

    from bitedge.builder.cache import BuildCache

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom bitedge.builder.cache import BuildCache\n"
         f"with BuildCache({str(tmp_path / 'cache')!r}).build_lock({str(tmp_path / 'out')!r}):\n"
         "    print('held', flush=True)\n    time.sleep(2)\n"],
        stdout=subprocess.PIPE, text=True, cwd=str(compile_mod.REPO))
    try:
        assert holder.stdout.readline().strip() == "held"
        waited, t0 = [], time.monotonic()
        with BuildCache(tmp_path / "cache").build_lock(tmp_path / "out", waiting=lambda: waited.append(1)):
            held_after = time.monotonic() - t0
        assert waited == [1] and held_after > 0.5  # it waited for the other process
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
