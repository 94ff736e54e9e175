"""`bitedge tune --host`: candidate kernels cross-built here, timed on a board over a real loopback sshd (as an
x86 board, and as an emulated ARM board whose profile runs binaries under qemu-aarch64), winners cached under
the board's CPU and used by the next build for that target. Not real: the board (none is reachable here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bitedge.targets import get_target
from bitedge.builder.compile import render_tl_kernels
from bitedge.cli import main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import write_gguf
from bitedge.board import probe_local
from bitedge.deploy.remote import BoardTimer
from bitedge.deploy.ssh import HostSpec, connect
from bitedge.errors import BitedgeError
from bitedge.render import model_shapes
from bitedge.builder.tuner import tune
from bitedge.render.tune import cache_key, load_cache, save_cache, tuned_tiles


LAB_BOARDS = {"x86": "x86-64-avx2", "arm": "rpi5-qemu", "wrong": "rpi5"}  # the lab fixture (conftest.py)


def lab_model(root: Path) -> Path:
    model = root / "m.gguf"
    write_gguf(dummy_source("test", seed=5), model, packing="tl1")
    return model


def test_tune_over_ssh_on_an_x86_board(lab, tmp_path, capsys):
    cache = tmp_path / "tuning.json"
    rc = main(["tune", str(lab.model), "--host", "x86", "--method", "tl1", "--method", "tl2",
               "--reps", "2", "--rounds", "1", "--cache", str(cache), *lab.ssh_args(), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    assert out["host"] == "x86" and out["target"] == "x86-64-avx2"
    shapes = model_shapes(lab.model)
    assert set(out["results"]) == {f"{m}/{n}x{k}" for m in ("tl1", "tl2") for n, k in shapes}
    board_cpu = probe_local().cpu  # the loopback board is this machine
    for r in out["results"].values():
        assert r["where"] == "x86" and r["cpu"] == board_cpu and not r["emulated"] and r["mean_ns"] > 0
        assert len(r["candidates"]) == 6 and r["tiles"] == min(r["candidates"], key=lambda c: c["mean_ns"])["tiles"]
    assert out["fastest"]["method"] in ("tl1", "tl2") and set(out["fastest"]["token_ns"]) == {"tl1", "tl2"}
    entries = load_cache(cache)["entries"]
    assert set(entries) == {cache_key(board_cpu, get_target("x86-64-avx2"), m, s) for m in ("tl1", "tl2") for s in shapes}
    # the board keeps nothing of the tuning run
    assert not (lab.root / "remote-x86" / "tune").exists()
    # and the next TL build for this target renders the winners
    sources = render_tl_kernels(get_target("x86-64-avx2"), shapes, tmp_path / "kernels", cache)
    text = next(p for p in sources if p.name == "bitedge_tl1_avx2.c").read_text()
    for k in {k for _, k in shapes}:  # one specialisation per row length: the tiles of its tallest shape
        n = max(n for n, kk in shapes if kk == k)
        t = out["results"][f"tl1/{n}x{k}"]["tiles"]
        assert f"_k{k}_bm{t['bm']}_bk{t['bk']}_bn{t['bn']}" in text


def test_tune_over_ssh_on_an_emulated_arm_board(lab, tmp_path):
    spec = HostSpec(name="arm", host="board", target="rpi5-qemu", remote_dir=str(lab.root / "remote-arm"))
    target = get_target("rpi5-qemu")
    cands = {"tl2": [{"bm": 32, "bk": 96, "bn": 256}, {"bm": 64, "bk": 48, "bn": 64}]}
    with connect(spec, ssh_config=lab.server.ssh_config, known_hosts=lab.server.known_hosts) as conn:
        timer = BoardTimer(conn, spec, target)
        try:
            results = tune(target, [(96, 200), (40, 7)], ["tl2"], cands, tmp_path / "t.json", reps=2, rounds=1,
                           work_dir=tmp_path / "work", timer=timer)
            staged = sorted(p.name for p in (lab.root / "remote-arm" / "tune").iterdir())
        finally:
            timer.close()
    # the aarch64 drivers went to the board and ran there under its qemu (two candidates, two data files a shape)
    assert staged == sorted(["tl2-cand0", "tl2-cand1", "tl2_96x200.w", "tl2_96x200.q", "tl2_40x7.w", "tl2_40x7.q"])
    assert (tmp_path / "work" / "tl2" / "cand0" / "build" / "bitedge-run").read_bytes()[18] == 0xB7  # EM_AARCH64
    for r in results.values():
        assert r["emulated"] and r["cpu"] == "emulated:qemu-aarch64 -cpu cortex-a76" and r["isa"] == "neon"
    assert not (lab.root / "remote-arm" / "tune").exists()


def test_board_tuning_feeds_builds_made_here(tmp_path):
    """A board tuned over SSH leaves entries under its own CPU; builds for its profile run here and use them."""
    cache = tmp_path / "t.json"
    rpi5 = get_target("rpi5")
    data = load_cache(cache)
    old = {"tiles": {"bm": 32, "bk": 64, "bn": 128}, "measured_at": "2026-11-01T00:00:00Z"}
    new = {"tiles": {"bm": 64, "bk": 128, "bn": 256}, "measured_at": "2026-11-20T00:00:00Z"}
    data["entries"][cache_key("Raspberry Pi 5 Model B Rev 1.0", rpi5, "tl1", (256, 512))] = new
    data["entries"][cache_key("Some older board", rpi5, "tl1", (256, 512))] = old
    data["entries"][cache_key("Raspberry Pi 5 Model B Rev 1.0", get_target("rpi4"), "tl1", (128, 256))] = old
    save_cache(data, cache)
    assert tuned_tiles(rpi5, "tl1", [(256, 512), (128, 256)], cache) == {(256, 512): new["tiles"]}  # newest wins
    assert tuned_tiles(rpi5, "tl1", [(256, 512)], cache, cpu="Some older board") == {(256, 512): old["tiles"]}
    assert tuned_tiles(rpi5, "tl2", [(256, 512)], cache) is None
    text = next(p for p in render_tl_kernels(rpi5, [(256, 512), (128, 256)], tmp_path / "k", cache)
                if p.name == "bitedge_tl1_neon.c").read_text()
    assert "_k512_bm64_bk128_bn256" in text and "_k256_bm32_bk128_bn256" in text  # tuned, and the profile default


def test_tune_refuses_a_binary_the_board_cannot_run(lab, tmp_path, capsys):
    rc = main(["tune", str(lab.model), "--host", "wrong", "--method", "tl1", "--reps", "1",
               "--rounds", "1", "--cache", str(tmp_path / "t.json"), *lab.ssh_args()])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "wrong is linux/x86_64 but profile rpi5 builds for linux/aarch64" in err  # before building anything
    # a binary that slips past the profile check is refused before it is uploaded
    spec = HostSpec(name="x86", host="board", remote_dir=str(lab.root / "remote-x86"))
    src = tmp_path / "hello.c"
    src.write_text("int main(void){return 0;}\n")
    arm_binary = tmp_path / "hello-arm"
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-o", str(arm_binary), str(src)], check=True)
    with connect(spec, ssh_config=lab.server.ssh_config, known_hosts=lab.server.known_hosts) as conn:
        timer = BoardTimer(conn, spec, get_target("x86-64-avx2"))
        with pytest.raises(BitedgeError, match="built for linux/aarch64 but the board is linux/x86_64"):
            timer.stage(arm_binary, "driver")
    assert not (lab.root / "remote-x86" / "tune" / "driver").exists()
    assert not (tmp_path / "t.json").exists()


def test_tune_on_an_unreachable_board_is_one_line(lab, tmp_path, capsys):
    rc = main(["tune", str(lab.model), "--host", "dead", "--method", "tl1", *lab.ssh_args()])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "dead" in err and "cannot connect" in err
    rc = main(["tune", "--host", "x86", *lab.ssh_args()])
    assert rc == 2 and "missing the MODEL argument" in capsys.readouterr().err
    with pytest.raises(BitedgeError, match="cannot run on this x86_64 machine: tune on the board over SSH"):
        tune(get_target("rpi5"), [(32, 32)], ["tl1"], cache_path=tmp_path / "t.json")
    assert Path(tmp_path / "t.json").exists() is False


def test_tuning_drivers_for_a_mac_are_mach_o(tmp_path):
    """A Mac cannot be reached from here: this checks only that `tune --host mac` has a driver to upload (zig cc
    cross-builds it as Mach-O arm64, as deploy does the runtime); running it needs a real Mac."""
    from bitedge.deploy.probe import binary_platform
    from bitedge.render import c_sources, render_driver, render_kernels
    from bitedge.builder.tuner import compile_driver

    mac = get_target("apple-m1")
    for method in ("tl1", "i2_s"):  # i2_s: the runtime's hand-written kernels, linked into the driver
        src = tmp_path / method
        paths = ([render_driver([], src, runtime_i2s=True)] if method == "i2_s"
                 else render_kernels(mac, [(64, 96)], method, None, src) + [render_driver([method], src)])
        exe = compile_driver(mac, c_sources(paths), src, src / "build")
        assert binary_platform(exe) == ("macos", "aarch64")
