"""Deploy the real runtime over a real loopback sshd: as an x86 board and as an emulated ARM board
(a profile whose runner is qemu-aarch64), then generate and benchmark remotely, and run a fleet with a
dead host. The only thing not real here is the board itself (none is reachable from CI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _runtime_helpers import generate_checked
from _sshd import make_sshd, write_board_inventory
from bitedge.cli import main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import write_gguf
from bitedge.gguf_read import read_model
from bitedge.reference import Reference
from bitedge.results.store import ResultStore


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    server = make_sshd(root / "sshd").start()
    model = root / "tiny.gguf"
    write_gguf(dummy_source("test", seed=3), model, packing="i2_s", embed_type="f16")
    inventory = write_board_inventory(root / "boards.toml", server, {"x86": "x86-64-avx2", "arm": "rpi5-qemu"})
    yield {"root": root, "server": server, "model": model, "inventory": inventory}
    server.stop()


def ssh(lab):
    return ["--inventory", str(lab["inventory"]), "--ssh-config", str(lab["server"].ssh_config),
            "--known-hosts", str(lab["server"].known_hosts), "--connect-timeout", "5"]


def run_json(capsys, args) -> dict:
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


def checked_tokens(deployed: dict, model: Path, prompt_tokens: list[int], n: int, workdir: Path) -> list[int]:
    """The deployed binary's greedy tokens, run here (the loopback board's files are local) under the exact lossless
    check against the reference: the remote run must give the same tokens (same binary, same bits)."""
    tokens, *_ = generate_checked(deployed["binary"], model, Reference(read_model(model)), prompt_tokens, workdir,
                                  "deployed", n=n, runner=deployed.get("runner") or None)
    return tokens


@pytest.mark.parametrize("board", ["x86", "arm"])
def test_deploy_then_generate_remotely_matches_the_reference(lab, capsys, board, tmp_path):
    first = run_json(capsys, ["deploy", board, "--model", str(lab["model"]), *ssh(lab), "--json"])
    assert [u["action"] for u in first["uploads"]] in (["uploaded", "uploaded"], ["skipped", "skipped"])
    assert Path(first["binary"]).is_file() and Path(first["model"]).read_bytes() == lab["model"].read_bytes()
    again = run_json(capsys, ["deploy", board, "--model", str(lab["model"]), *ssh(lab), "--json"])
    assert [u["action"] for u in again["uploads"]] == ["skipped", "skipped"]
    if board == "arm":
        assert again["runner"][:1] == ["qemu-aarch64"]
    out = run_json(capsys, ["generate", str(lab["model"]), "--host", board, "-p", "hello board", "-n", "10",
                            "--ignore-eos", *ssh(lab), "--json"])
    assert out["tokens"] == checked_tokens(again, lab["model"], out["prompt_tokens"], 10, tmp_path)


def test_fleet_bench_stores_results_and_the_dead_host_fails_alone(lab, capsys):
    db = lab["root"] / "results.db"
    rc = main(["bench", str(lab["model"]), "--hosts", "x86,dead,arm", "-p", "8", "-n", "4", "-r", "2",
               "--db", str(db), *ssh(lab), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = json.loads(captured.out)
    assert set(out["failed"]) == {"dead"}
    rows = ResultStore(db).rows()
    assert {r.board for r in rows} == {"x86", "arm"}
    assert {r.test for r in rows} == {"pp8", "tg4"}
    assert all(r.avg_ts > 0 and r.method == "i2_s" and len(r.model_sha256) == 64 for r in rows)
    assert "dead" in captured.err and "2/3 hosts succeeded" in captured.err


def test_wrong_architecture_is_refused_before_upload(lab, capsys, tmp_path):
    # a real-ARM profile (no runner) on an x86 board: the aarch64 binary must not be uploaded
    inv = tmp_path / "inv.toml"
    inv.write_text(f'[hosts.fake-pi]\nhost = "board"\ntarget = "rpi5"\nremote_dir = "{tmp_path / "r"}"\n')
    rc = main(["deploy", "fake-pi", "--model", str(lab["model"]), "--inventory", str(inv),
               "--ssh-config", str(lab["server"].ssh_config), "--known-hosts", str(lab["server"].known_hosts)])
    err = capsys.readouterr().err
    assert rc == 2 and "built for linux/aarch64 but the board is linux/x86_64" in err
    assert not (tmp_path / "r").exists()
