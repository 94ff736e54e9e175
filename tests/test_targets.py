"""Board profiles: the shipped set loads and is consistent; every kind of bad profile is refused with file,
key and problem; users add boards with a folder; probe results map to profiles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bitedge.targets import ISA_FEATURES, get_target, load_target_file, load_targets, suggest_targets
from bitedge.errors import BitedgeError

SHIPPED = {"rpi3", "rpi4", "rpi5", "jetson-orin", "apple-m1", "apple-m2", "apple-m3", "generic-aarch64",
           "x86-64-avx2", "x86-64-avx512", "rpi4-qemu", "rpi5-qemu", "aarch64-max-qemu"}

GOOD = """
id = "myboard"
name = "My board"
aliases = ["mb"]
os = "linux"
arch = "aarch64"
libc = "musl"
cpu_flags = ["-mcpu=cortex-a55"]
isa = ["neon", "dotprod"]
cores = 4
memory_mb = 4096
toolchains = ["gcc-cross"]

[kernel]
method = "tl1"
measured = false
"""


def write(folder: Path, text: str, name: str = "myboard.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_shipped_profiles_load_and_are_consistent():
    targets = load_targets()
    assert SHIPPED <= set(targets)
    for t in targets.values():
        assert t.path is not None and t.path.name == f"{t.id}.toml"
        assert set(t.isa) <= set(ISA_FEATURES[t.arch])
        assert t.kernel.method in ("i2_s", "tl1", "tl2")
        if t.os == "macos":
            assert t.toolchains == ("zig",) and t.libc == "macos"
    # the ISA facts the task is about
    assert "dotprod" not in targets["rpi3"].isa and "dotprod" not in targets["rpi4"].isa
    assert "dotprod" in targets["rpi5"].isa and "dotprod" in targets["jetson-orin"].isa
    assert "i8mm" not in targets["apple-m1"].isa and "i8mm" in targets["apple-m2"].isa
    assert targets["generic-aarch64"].isa == ("neon",)
    assert targets["rpi4-qemu"].runner == ("qemu-aarch64", "-cpu", "cortex-a72")
    assert targets["rpi5-qemu"].runner == ("qemu-aarch64", "-cpu", "cortex-a76")
    assert targets["aarch64-max-qemu"].runner[-1] == "max"
    assert targets["rpi5"].runner is None
    # only x86-64-avx2's default was measured (on the workstation); no ARM board has run `bitedge tune` yet
    assert {tid for tid, t in targets.items() if t.kernel.measured} == {"x86-64-avx2"}
    assert all(not t.kernel.measured for t in targets.values() if t.arch == "aarch64")


def test_get_target_by_id_alias_and_unknown():
    assert get_target("pi5").id == "rpi5"
    assert get_target("rpi5") is not None
    with pytest.raises(BitedgeError, match="unknown target 'pi9'.*rpi5"):
        get_target("pi9")


def test_feature_defines_name_every_required_feature():
    defines = get_target("rpi5").feature_defines()
    assert "-DBITEDGE_REQUIRE_DOTPROD=1" in defines and "-DBITEDGE_REQUIRE_NEON=1" in defines
    assert not any("I8MM" in d for d in defines)
    assert '-DBITEDGE_TARGET="rpi5"' in defines


def test_user_folder_adds_a_board(tmp_path):
    write(tmp_path / "boards", GOOD)
    t = get_target("mb", [tmp_path / "boards"])
    assert (t.id, t.libc, t.kernel.method) == ("myboard", "musl", "tl1")
    assert "myboard" in load_targets([tmp_path / "boards"])


def test_env_path_adds_a_board(tmp_path, monkeypatch):
    write(tmp_path, GOOD)
    monkeypatch.setenv("BITEDGE_TARGETS_PATH", str(tmp_path))
    assert get_target("myboard").cpu_flags == ("-mcpu=cortex-a55",)


BAD = [
    ('cores = 4', 'cores = 4\ncolour = "red"', "key 'colour': unknown key"),
    ('cores = 4', 'cores = "four"', "key 'cores': expected an integer, got str"),
    ('cores = 4', 'cores = true', "key 'cores': expected an integer, got bool"),
    ('cores = 4', 'cores = 0', "key 'cores': must be positive"),
    ('cores = 4\n', '', "key 'cores': missing"),
    ('isa = ["neon", "dotprod"]', 'isa = ["neon", "dotprot"]', "key 'isa': unknown ISA feature 'dotprot'"),
    ('isa = ["neon", "dotprod"]', 'isa = ["neon", "avx2"]', "key 'isa': unknown ISA feature 'avx2' \\(an x86_64 feature"),
    ('os = "linux"', 'os = "windows"', "key 'os': bad value 'windows'"),
    ('libc = "musl"', 'libc = "uclibc"', "key 'libc': bad value 'uclibc'"),
    ('method = "tl1"', 'method = "tl3"', "key 'kernel.method': bad value 'tl3'"),
    ('measured = false', 'measured = "no"', "key 'kernel.measured': expected true or false"),
    # [kernel.tiles] was read by nothing (tiles come from bitedge tune's cache): refused like any unknown key
    ('measured = false', 'measured = false\n\n[kernel.tiles]\nbm = 128', "key 'kernel.tiles': unknown key"),
    ('toolchains = ["gcc-cross"]', 'toolchains = ["msvc"]', "key 'toolchains': unknown toolchain 'msvc'"),
    ('cpu_flags = ["-mcpu=cortex-a55"]', 'cpu_flags = "-mcpu=cortex-a55"', "key 'cpu_flags': expected a list of strings"),
    ('toolchains = ["gcc-cross"]', 'toolchains = ["gcc-cross"]\nrunner = []', "key 'runner': empty"),
    ('id = "myboard"', 'id = "My Board"', "key 'id': bad value"),
]


@pytest.mark.parametrize("old,new,message", BAD, ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_profiles_name_file_key_and_problem(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(BitedgeError) as err:
        load_target_file(path)
    assert re.search(message, str(err.value)), str(err.value)
    assert str(err.value).startswith(str(path))


def test_not_toml_and_duplicates(tmp_path):
    write(tmp_path / "a", "id = ", "x.toml")
    with pytest.raises(BitedgeError, match="x.toml: not valid TOML"):
        load_targets([tmp_path / "a"])
    write(tmp_path / "b", GOOD.replace('id = "myboard"', 'id = "rpi5"'))
    with pytest.raises(BitedgeError, match="key 'id': 'rpi5' is already used by .*rpi5.toml"):
        load_targets([tmp_path / "b"])
    write(tmp_path / "c", GOOD.replace('aliases = ["mb"]', 'aliases = ["pi4"]'))
    with pytest.raises(BitedgeError, match="key 'aliases': 'pi4' is already used"):
        load_targets([tmp_path / "c"])
    with pytest.raises(BitedgeError, match="targets folder does not exist"):
        load_targets([tmp_path / "nope"])


def test_suggest_targets_from_probe():
    pi5 = {"os": "linux", "arch": "aarch64", "features": ["neon", "fp16", "dotprod"],
           "board": "Raspberry Pi 5 Model B Rev 1.0", "cpu": "", "runners": []}
    assert suggest_targets(pi5)[0] == "rpi5"
    assert "rpi3" in suggest_targets(pi5) and "apple-m1" not in suggest_targets(pi5)
    pi4 = {"os": "linux", "arch": "aarch64", "features": ["neon"], "board": "Raspberry Pi 4 Model B", "runners": []}
    assert suggest_targets(pi4)[0] == "rpi4" and "rpi5" not in suggest_targets(pi4)
    x86 = {"os": "linux", "arch": "x86_64", "features": ["sse3", "ssse3", "avx", "avx2", "fma", "f16c"],
           "runners": ["qemu-aarch64"]}
    got = suggest_targets(x86)
    assert got[0] == "x86-64-avx2" and "x86-64-avx512" not in got and "rpi5-qemu" in got
    mac = {"os": "macos", "arch": "aarch64", "features": ["neon", "fp16", "dotprod", "i8mm", "bf16"], "cpu": "Apple M2"}
    assert suggest_targets(mac)[0] == "apple-m2"
