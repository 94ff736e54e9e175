"""Toolchains: detection with versions, zig's CPU spelling, selection order ($CC, --cc, the profile's list),
and doctor rows."""

from __future__ import annotations

import shutil

import pytest

from bitedge.targets import get_target
from bitedge.builder.doctor import doctor
from bitedge.builder.toolchains import detect_toolchain, detect_toolchains, host_arch, select_toolchain, zig_cpu_flags
from bitedge.errors import BitedgeError

needs_cross_gcc = pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None, reason="no aarch64-linux-gnu-gcc")


@pytest.mark.parametrize("flags,arch,expected", [
    (["-mcpu=cortex-a76"], "aarch64", ["-mcpu=cortex_a76"]),
    (["-mcpu=apple-m1"], "aarch64", ["-mcpu=apple_m1"]),
    (["-march=armv8-a"], "aarch64", ["-mcpu=generic"]),
    (["-march=armv8.2-a+fp16+dotprod"], "aarch64", ["-mcpu=generic+v8_2a+fullfp16+dotprod"]),
    (["-march=x86-64-v3", "-mtune=znver3"], "x86_64", ["-mcpu=x86_64_v3"]),
    (["-fno-plt"], "x86_64", ["-fno-plt"]),
])
def test_zig_cpu_spelling(flags, arch, expected):
    assert zig_cpu_flags(flags, arch) == expected


def test_zig_accepts_every_shipped_profile_cpu():
    """zig rejects a CPU name it does not know: check the translated flags of every profile against zig."""
    import subprocess
    import os
    from bitedge.targets import load_targets

    zig = detect_toolchain("zig")
    if zig is None:
        pytest.skip("ziglang not installed")
    for t in load_targets().values():
        proc = subprocess.run([*zig.command, *zig.compile_flags(t), "-E", "-x", "c", os.devnull],
                              capture_output=True, text=True, env={**os.environ, **zig.env()})
        assert proc.returncode == 0, (t.id, proc.stderr)


def test_detection_reports_versions():
    found = detect_toolchains()
    assert found, "no C compiler at all on this machine"
    for tc in found:
        assert tc.version and tc.command
    ids = {tc.id for tc in found}
    if shutil.which("gcc"):
        assert "gcc" in ids


@needs_cross_gcc
def test_profile_order_and_explicit_choice(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    rpi5 = get_target("rpi5")
    tc = select_toolchain(rpi5, "gcc-cross")
    assert tc.id == "gcc-cross" and tc.command == ("aarch64-linux-gnu-gcc",) and tc.version[0].isdigit()
    assert select_toolchain(rpi5).id == rpi5.toolchains[0] or detect_toolchain(rpi5.toolchains[0]) is None
    if host_arch() != "aarch64":
        with pytest.raises(BitedgeError, match="toolchain 'gcc' cannot build rpi5: gcc builds for this machine"):
            select_toolchain(rpi5, "gcc")
    with pytest.raises(BitedgeError, match="toolchain 'gcc-cross' cannot build apple-m1"):
        select_toolchain(get_target("apple-m1"), "gcc-cross")


@needs_cross_gcc
def test_cc_is_respected_when_it_builds_for_the_target(monkeypatch):
    rpi4 = get_target("rpi4")
    monkeypatch.setenv("CC", "aarch64-linux-gnu-gcc")
    tc = select_toolchain(rpi4)
    assert tc.id == "cc" and tc.machine.startswith("aarch64")
    # a CC for another architecture is passed over, not used for the wrong target
    if shutil.which("gcc") and host_arch() == "x86_64":
        monkeypatch.setenv("CC", "gcc")
        assert select_toolchain(rpi4).id != "cc"
        with pytest.raises(BitedgeError, match="--cc: gcc builds for x86_64"):
            select_toolchain(rpi4, cc="gcc")
    with pytest.raises(BitedgeError, match="compiler 'no-such-gcc' not found"):
        select_toolchain(rpi4, cc="no-such-gcc")


def test_old_compiler_that_does_not_know_the_cpu_is_unusable():
    clang = detect_toolchain("clang-cross", "aarch64")
    if clang is None:
        pytest.skip("no clang")
    why = clang.unsupported(get_target("jetson-orin"))
    if why is not None:  # clang 14 has no cortex-a78ae; newer ones do
        assert "does not know -mcpu=cortex-a78ae" in why


def test_doctor_rows(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    rows = {r.target: r for r in doctor()}
    assert {"rpi5", "apple-m1", "x86-64-avx2", "rpi4-qemu"} <= set(rows)
    for r in rows.values():
        assert (r.toolchain is None) == bool(r.fix) or r.runner_ok is False
        if r.toolchain:
            assert r.toolchain in r.usable and r.version
        d = r.as_dict()
        assert isinstance(d["usable"], list)
    if detect_toolchain("zig"):
        assert rows["apple-m1"].toolchain == "zig" and rows["apple-m1"].static is False
    assert rows["rpi4-qemu"].runner == "qemu-aarch64"
    assert rows["rpi4-qemu"].runner_ok == (shutil.which("qemu-aarch64") is not None)


def test_doctor_says_what_to_install(monkeypatch):
    import bitedge.builder.toolchains as tcs

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(tcs, "detect_toolchain", lambda tid, arch=None: None)
    monkeypatch.setattr(tcs.shutil, "which", lambda name: None)
    row = {r.target: r for r in doctor()}["rpi5"]
    assert row.toolchain is None and row.fix == "pip install ziglang" and row.usable == ()
    row = {r.target: r for r in doctor()}["rpi4-qemu"]
    assert "apt install qemu-user" in row.fix
    with pytest.raises(BitedgeError, match="no toolchain here can build rpi5: zig: not installed \\(pip install ziglang\\); "
                                           "gcc-cross: not installed \\(apt install gcc-aarch64-linux-gnu\\)"):
        select_toolchain(get_target("rpi5"))
