"""Every command with bad arguments and bad files (missing, empty, truncated, of the wrong type, an output that cannot
be written): one line "bitedge: error: ...", exit status 2, never a traceback or an internal error, and no file
left half-written. SIGTERM during convert cleans up like Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitedge.cli import main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.hf_writer import write_dummy_hf
from bitedge.convert.gguf_writer import write_gguf
from bitedge.results.store import ResultStore, rows_from_bench


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = d / "good.gguf"
    write_gguf(dummy_source("test", seed=1), good, packing="i2_s", embed_type="f16")
    data = good.read_bytes()
    (d / "empty.gguf").write_bytes(b"")
    (d / "truncated.gguf").write_bytes(data[: len(data) // 2])
    (d / "header-only.gguf").write_bytes(data[:40])
    (d / "text.gguf").write_text("this is not a model\n")
    (d / "png.gguf").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (d / "folder.gguf").mkdir()
    (d / "hf-bad").mkdir()
    (d / "hf-bad" / "config.json").write_text("{not json")
    (d / "hf-empty").mkdir()
    db = d / "results.db"
    ResultStore(db).add(rows_from_bench({"results": [{"n_prompt": 8, "n_gen": 0, "n_threads": 1, "avg_ts": 5.0,
                                                      "stddev_ts": 0.1}]},
                                        board="b", target="t", model="m", model_sha256="x", method="i2_s"))
    (d / "text.db").write_text("not sqlite\n")
    (d / "empty.db").write_bytes(b"")
    (d / "truncated.db").write_bytes(db.read_bytes()[:100])
    import sqlite3

    other = sqlite3.connect(d / "other.db")
    other.execute("CREATE TABLE runs (x INTEGER)")
    other.commit()
    other.close()
    (d / "bad.toml").write_text("[hosts.a\n")
    (d / "ssh_config").write_text("Host bx\n  HostName 127.0.0.1\n  Port notaport\n")
    (d / "ssh_config_unparsable").write_text("Host bx\n  HostName 127.0.0.1\n\n  Port\n")  # no value: paramiko raises
    (d / "file").write_text("a file, not a folder\n")
    return d


BAD_MODELS = ["missing.gguf", "empty.gguf", "truncated.gguf", "header-only.gguf", "text.gguf", "png.gguf", "folder.gguf"]
BAD_SOURCES = BAD_MODELS + ["hf-bad", "hf-empty"]
UNWRITABLE = ["nodir/out.gguf", "file/out.gguf", "folder.gguf"]


def cases():
    """(id, argv with {d} for the files folder, path that must not appear)"""
    out = []
    for bad in BAD_MODELS:
        out += [
            (f"inspect-{bad}", ["inspect", "{d}/" + bad], None),
            (f"generate-ref-{bad}", ["generate", "{d}/" + bad, "--engine", "reference", "-p", "hi", "-n", "2"], None),
            (f"bench-{bad}", ["bench", "{d}/" + bad, "--db", "{d}/walk.db"], None),
            (f"kernels-{bad}", ["kernels", "{d}/" + bad, "--target", "x86-64-avx2", "--out-dir", "{d}/k"], "{d}/k"),
            (f"tune-{bad}", ["tune", "{d}/" + bad, "--target", "x86-64-avx2"], None),
            (f"build-{bad}", ["build", "{d}/" + bad, "--target", "x86-64-avx2", "--out-dir", "{d}/b"], "{d}/b"),
            (f"deploy-{bad}", ["deploy", "{d}/" + bad, "--host", "x"], None),
            (f"serve-{bad}", ["serve", "{d}/" + bad], None),
        ]
    for bad in BAD_SOURCES:
        out.append((f"convert-{bad}", ["convert", "{d}/" + bad, "-o", "{d}/out.gguf"], "{d}/out.gguf"))
    for bad in UNWRITABLE:
        out += [
            (f"convert-to-{bad}", ["convert", "{d}/good.gguf", "-o", "{d}/" + bad, "--no-progress"], None),
            (f"dummy-to-{bad}", ["dummy", "--preset", "test", "-o", "{d}/" + bad, "--no-progress"], None),
            (f"export-to-{bad}", ["results", "export", "--db", "{d}/results.db", "-o", "{d}/" + bad], None),
            (f"report-csv-to-{bad}", ["report", "--db", "{d}/results.db", "--csv", "{d}/" + bad], None),
        ]
    for db in ("text.db", "empty.db", "truncated.db", "other.db", "folder.gguf", "file/x.db", "missing.db"):
        out.append((f"report-db-{db}", ["report", "--db", "{d}/" + db], None))
        out.append((f"export-db-{db}", ["results", "export", "--db", "{d}/" + db], None))
    out += [
        ("bench-threads-abc", ["bench", "{d}/good.gguf", "-t", "abc", "--db", "{d}/walk.db"], None),
        ("bench-threads-zero", ["bench", "{d}/good.gguf", "-t", "1,0", "--db", "{d}/walk.db"], None),
        ("bench-reps-zero", ["bench", "{d}/good.gguf", "-r", "0", "--db", "{d}/walk.db"], None),
        ("bench-hosts-empty", ["bench", "{d}/good.gguf", "--hosts", "", "--db", "{d}/walk.db"], None),
        ("bench-host-empty", ["bench", "{d}/good.gguf", "--host", " ", "--db", "{d}/walk.db"], None),
        ("bench-n-prompt-negative", ["bench", "{d}/good.gguf", "--n-prompt", "-1", "--db", "{d}/walk.db"], None),
        ("bench-p-is-not-a-count", ["bench", "{d}/good.gguf", "-p", "8", "--db", "{d}/walk.db"], None),
        ("bench-no-model", ["bench", "--db", "{d}/walk.db"], None),
        ("bench-targets-dir-missing", ["bench", "{d}/good.gguf", "--targets-dir", "{d}/missing", "--db", "{d}/walk.db"], None),
        ("generate-targets-dir-missing", ["generate", "{d}/good.gguf", "--targets-dir", "{d}/missing"], None),
        ("generate-model-twice", ["generate", "{d}/good.gguf", "--model", "{d}/good.gguf"], None),
        ("generate-no-model", ["generate", "-p", "hi"], None),
        ("serve-targets-dir-missing", ["serve", "{d}/good.gguf", "--targets-dir", "{d}/missing"], None),
        ("tune-targets-dir-missing", ["tune", "{d}/good.gguf", "--targets-dir", "{d}/missing"], None),
        ("kernels-targets-dir-missing", ["kernels", "{d}/good.gguf", "--targets-dir", "{d}/missing", "--out-dir", "{d}/k"], "{d}/k"),
        ("build-two-targets", ["build", "--target", "rpi5", "rpi4", "--out-dir", "{d}/b"], "{d}/b"),
        ("build-model-not-a-target", ["build", "nothing-here", "--out-dir", "{d}/b"], "{d}/b"),
        ("deploy-no-host", ["deploy", "{d}/good.gguf"], None),
        ("deploy-host-as-model", ["deploy", "pi5"], None),
        ("generate-host-as-model", ["generate", "pi5"], None),
        ("probe-no-host", ["probe"], None),
        ("probe-positional-host", ["probe", "bx"], None),
        ("dummy-no-output", ["dummy", "--preset", "test"], None),
        ("dummy-two-outputs", ["dummy", "--preset", "test", "-o", "{d}/out.gguf", "--hf-dir", "{d}/hf-out"], "{d}/out.gguf"),
        ("report-hosts-blank", ["report", "--db", "{d}/results.db", "--hosts", "a,,b"], None),
        ("report-model-unknown", ["report", "nope.gguf", "--db", "{d}/results.db"], None),
        ("export-db-missing-json", ["results", "export", "--db", "{d}/missing.db", "--json"], None),
        ("bench-hosts-blank", ["bench", "{d}/good.gguf", "--hosts", "a,,b", "--db", "{d}/walk.db"], None),
        ("generate-n-negative", ["generate", "{d}/good.gguf", "--engine", "reference", "-n", "-1"], None),
        ("generate-ref-context", ["generate", "{d}/good.gguf", "--engine", "reference", "-p", "a " * 400, "-n", "2"], None),
        ("generate-prompt-not-utf8", ["generate", "{d}/good.gguf", "--engine", "reference", "-p", "a\udcff\udcfeb"], None),
        ("generate-ref-host", ["generate", "{d}/good.gguf", "--engine", "reference", "--host", "x"], None),
        ("generate-engine-bad", ["generate", "{d}/good.gguf", "--engine", "gpu"], None),
        ("convert-type-bad", ["convert", "{d}/good.gguf", "-o", "{d}/out.gguf", "--type", "q4_0"], "{d}/out.gguf"),
        ("dummy-preset-bad", ["dummy", "--preset", "9T", "-o", "{d}/out.gguf"], "{d}/out.gguf"),
        ("targets-show-bad", ["targets", "show", "no-such-board"], None),
        ("targets-dir-missing", ["targets", "--targets-dir", "{d}/missing"], None),
        ("build-target-bad", ["build", "--target", "no-such-board", "--out-dir", "{d}/b"], "{d}/b"),
        ("kernels-target-bad", ["kernels", "{d}/good.gguf", "--target", "nope", "--out-dir", "{d}/k"], "{d}/k"),
        ("kernels-o-is-a-file", ["kernels", "{d}/good.gguf", "--target", "x86-64-avx2", "-o", "{d}/k"], "{d}/k"),
        ("probe-ssh-config-missing", ["probe", "--host", "bx", "--ssh-config", "{d}/missing"], None),
        ("probe-ssh-config-bad-port", ["probe", "--host", "bx", "--ssh-config", "{d}/ssh_config"], None),
        ("probe-ssh-config-unparsable", ["probe", "--host", "bx", "--ssh-config", "{d}/ssh_config_unparsable"], None),
        ("deploy-ssh-config-unparsable", ["deploy", "--host", "bx", "--ssh-config", "{d}/ssh_config_unparsable"], None),
        ("probe-inventory-missing", ["probe", "--host", "a", "--inventory", "{d}/missing.toml"], None),
        ("probe-inventory-bad", ["probe", "--host", "a", "--inventory", "{d}/bad.toml"], None),
        ("probe-host-bad", ["probe", "--host", "user@[::1"], None),
        ("probe-port-bad", ["probe", "--host", "h:99999"], None),
        ("deploy-model-missing", ["deploy", "{d}/missing.gguf", "--host", "x", "--target", "x86-64-avx2"], None),
        ("deploy-timeout-bad", ["deploy", "--host", "x", "--connect-timeout", "-1"], None),
        ("demo-model-empty", ["demo", "{d}/empty.gguf", "--out-dir", "{d}/demo"], None),
        ("demo-model-text", ["demo", "{d}/text.gguf", "--out-dir", "{d}/demo"], None),
        ("demo-out-dir-file", ["demo", "{d}/good.gguf", "--out-dir", "{d}/file/demo"], None),
        ("build-out-dir-file", ["build", "--target", "x86-64-avx2", "--out-dir", "{d}/file"], None),
        ("dummy-hf-to-file", ["dummy", "--preset", "test", "--hf-dir", "{d}/file"], None),
        ("report-plots-to-file", ["report", "--db", "{d}/results.db", "--plots", "{d}/file"], None),
        ("tune-host-unreachable", ["tune", "{d}/good.gguf", "--host", "x", "--connect-timeout", "2"], None),
        ("no-such-command", ["frobnicate"], None),
        ("no-such-option", ["inspect", "--frob"], None),
    ]
    return out


CASES = cases()


@pytest.mark.parametrize("argv, must_not_exist", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(files, capsys, argv, must_not_exist):
    argv = [a.replace("{d}", str(files)) for a in argv]
    before = {p.name for p in files.iterdir()}
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"exit {rc}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert len(lines) == 1 and lines[0].startswith("bitedge: error: "), err
    if must_not_exist:
        assert not Path(must_not_exist.replace("{d}", str(files))).exists()
    leftovers = {p.name for p in files.iterdir()} - before - {"walk.db"}
    assert not leftovers, f"left behind: {leftovers}"
    assert not [p for p in files.rglob("*partial*")]


def test_an_unparsable_ssh_config_line_is_named_by_file_and_line(files, capsys, tmp_path, monkeypatch):
    """paramiko's ConfigParseError says what, not where, and was a traceback (issue #17): the file and line."""
    config = files / "ssh_config_unparsable"
    assert main(["probe", "--host", "bx", "--ssh-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == f"bitedge: error: ssh_config {config} line 4: cannot parse 'Port' (a setting is 'Keyword value')\n"
    # the same in the user's own ~/.ssh/config, read when no --ssh-config is given
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host *\n  ServerAliveInterval 30\n=oops\n")
    assert main(["probe", "--host", "bx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitedge: error: ssh_config ~/.ssh/config line 3: cannot parse '=oops'") and err.count("\n") == 1


def test_convert_warns_about_a_model_without_tokenizer(files, tmp_path, capsys):
    src = tmp_path / "hf"
    write_dummy_hf("test", src, seed=0)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    assert main(["convert", str(src), "-o", str(tmp_path / "m.gguf"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no tokenizer" in err and (tmp_path / "m.gguf").exists()


def test_convert_refuses_what_the_runtime_would_refuse(tmp_path, capsys):
    src = tmp_path / "hf"
    write_dummy_hf("test", src, seed=0)
    config = json.loads((src / "config.json").read_text())
    for value, message in ((2**40, "above what bitedge-run loads"), (0, "must be a positive integer"),
                           ("abc", "wrong type")):
        (src / "config.json").write_text(json.dumps({**config, "max_position_embeddings": value}))
        assert main(["convert", str(src), "-o", str(tmp_path / "m.gguf"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_flag_names_in_errors_exist():
    """tq2_0 on a shape it cannot store says --type (the flag), not --packing (the non-ternary error's
    --force-ternarize is checked in test_hf_import)."""
    from bitedge.formats.packing.tq2 import TQ2
    from bitedge.errors import BitedgeError

    with pytest.raises(BitedgeError, match="use --type i2_s"):
        TQ2().check_k(4, 100, "t")


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("sig") / "hf125"
    write_dummy_hf("125M", d, seed=0)
    return d


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_convert_leaves_nothing(big_checkpoint, tmp_path, sig, code):
    out = tmp_path / "out.gguf"
    proc = subprocess.Popen([sys.executable, "-m", "bitedge.cli", "convert", str(big_checkpoint), "-o", str(out),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not list(tmp_path.glob("*partial*")):
        time.sleep(0.005)
    assert proc.poll() is None, "convert finished before it could be signalled"
    assert list(tmp_path.glob("*partial*")), "no partial file appeared"
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == [], f"left behind: {list(tmp_path.iterdir())}"
