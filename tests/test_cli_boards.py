"""CLI commands that talk to boards, against a real loopback sshd."""

import json

from bitedge.cli import main
from bitedge.results.store import ResultStore, rows_from_bench


def ssh_args(sshd):
    return ["--ssh-config", str(sshd.ssh_config), "--known-hosts", str(sshd.known_hosts)]


def test_probe_json(sshd, capsys):
    assert main(["probe", "--host", "board", *ssh_args(sshd), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["os"] == "linux" and info["cores"] >= 1


def test_probe_unknown_host_key_is_one_line_exit_2(sshd, tmp_path, capsys):
    empty = tmp_path / "kh"
    empty.write_text("")
    rc = main(["probe", "--host", "board", "--ssh-config", str(sshd.ssh_config), "--known-hosts", str(empty)])
    err = capsys.readouterr().err
    assert rc == 2 and "--accept-new-host-key" in err and len(err.strip().splitlines()) == 1


def test_report_and_export(tmp_path, capsys):
    db = tmp_path / "r.db"
    bench = {"results": [{"n_prompt": 128, "n_gen": 0, "n_threads": 1, "avg_ts": 50.0, "stddev_ts": 1.0}]}
    store = ResultStore(db)
    for board, factor in (("pi4", 1.0), ("pi5", 2.5)):
        rows = rows_from_bench({"results": [{**bench["results"][0], "avg_ts": 50.0 * factor}]},
                               board=board, target=board, model="m", model_sha256="x", method="i2_s")
        store.add(rows)
    assert main(["report", "--db", str(db), "--baseline", "pi4", "--plots", str(tmp_path / "p"), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "| pi5 | m | i2_s | 1 | pp128 | 125.00 ± 1.00 | 2.50x |" in out
    assert (tmp_path / "p" / "pp128_speedup.png").exists() and "pi5" in (tmp_path / "t.csv").read_text()
    assert main(["results", "export", "--db", str(db), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["report", "--db", str(tmp_path / "empty.db")]) == 2
