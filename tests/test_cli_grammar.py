"""One grammar for every command (docs/architecture.md, "The command line"), the docs agreeing with the CLI, and the
report pairing methods by the source model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from bitedge.cli import cli, main
from bitedge.convert.dummy import dummy_source
from bitedge.convert.gguf_writer import write_gguf
from bitedge.results.store import ResultStore, rows_from_bench

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """(path, command) for every leaf command and group of the CLI."""
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*path, name))


def options(cmd: click.Command) -> dict[str, click.Option]:
    return {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}


def visible(cmd):
    return {o: p for o, p in options(cmd).items() if not p.hidden}


ALL = list(commands())


@pytest.mark.parametrize("path, cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_follows_the_grammar(path, cmd):
    opts = visible(cmd)
    if "--target" in opts:
        assert "--targets-dir" in opts
    if "-p" in opts:
        assert opts["-p"].name == "prompt", "-p is prompt text everywhere"
    if "-o" in opts:
        t = opts["-o"].type
        assert isinstance(t, click.Path) and not t.dir_okay, "-o is an output file everywhere"
    assert "--model" not in opts, "the model is the MODEL argument (--model is a hidden old spelling)"
    for name in ("--host", "--hosts"):
        if name in opts:
            assert opts[name].name == name[2:] and not opts[name].multiple
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if any(p.name == "model" for p in args):
        assert args[0].name == "model", "MODEL comes first"
    if "--db" in opts:
        assert "BITEDGE_RESULTS" in opts["--db"].help
    if not isinstance(cmd, click.Group) and path != ("results",):
        assert "--json" in opts, "--json wherever a command prints a result"
    from click.testing import CliRunner

    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0 and f"Usage: cli {' '.join(path)}" in r.output
    for o in opts:  # every option (and its help) shows in --help; the hidden old spellings do not
        assert o in r.output
    for o in set(options(cmd)) - set(opts):
        assert not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", r.output.split("Options:")[-1])


# commands that show progress (bars, build lines, spinners)
PROGRESS = ["convert", "dummy", "build", "deploy", "bench", "generate", "tune", "serve", "demo"]


@pytest.mark.parametrize("name", PROGRESS)
def test_no_progress_wherever_there_is_progress(name):
    assert "--no-progress" in visible(cli.commands[name])


# ---- the docs ------------------------------------------------------------------------------------------------------


def _command_lines():
    """(file:line, argv after `bitedge`, fenced) for every `bitedge ...` command in the docs: each line of a fenced
    code block, and each inline code span that starts with `bitedge `."""
    for doc in DOCS:
        fenced = False
        for no, line in enumerate(doc.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            where = f"{doc.name}:{no}"
            if fenced:
                text = line.strip().removeprefix("$ ")
                if not re.match(r"(\S+=\S+ )*bitedge ", text):  # C, TOML, output: not a command line
                    continue
                for part in re.split(r"&&|;|\|", text.split(" # ")[0].split("  #")[0]):
                    words = shlex.split(part)
                    while words and "=" in words[0] and not words[0].startswith("-"):  # CC=... bitedge build
                        words = words[1:]
                    if words[:1] == ["bitedge"]:
                        yield where, words[1:], True
            else:
                for span in re.findall(r"`(bitedge [^`]*)`", line):
                    yield where, span.split()[1:], False


LINES = list(_command_lines())


def _leaf(argv):
    """The command an argv names and the rest of it."""
    cmd, rest, path = cli, list(argv), []
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        if rest[0] not in cmd.commands:
            return None, rest, path
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest, path


def test_the_docs_have_command_lines():
    assert len([1 for _, _, fenced in LINES if fenced]) >= 15 and len(LINES) >= 50


@pytest.mark.parametrize("where, argv, fenced", LINES, ids=[f"{w} {' '.join(a)[:40]}" for w, a, _ in LINES])
def test_every_command_in_the_docs_parses(where, argv, fenced, monkeypatch):
    """Fenced lines are parsed by click itself (options exist, values of the right type, required arguments given;
    only whether named files exist is not checked); inline spans, which may hold placeholders such as [--json] or
    a|b, must name a command and only its options. No doc uses a deprecated spelling."""
    cmd, rest, path = _leaf(argv)
    assert cmd is not None, f"{where}: no command bitedge {' '.join(argv)}"
    if not fenced:
        for word in rest:
            for opt in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", word):
                if opt in ("--help", "-h"):
                    continue
                assert opt in visible(cmd), f"{where}: bitedge {' '.join(path)} has no option {opt}"
        return
    monkeypatch.setattr(click.Path, "convert", lambda self, value, param, ctx: value)
    if isinstance(cmd, click.Group) and not rest:
        return
    ctx = cmd.make_context(" ".join(["bitedge", *path]), rest)
    for p in cmd.params:
        if p.hidden if isinstance(p, click.Option) else False:
            assert ctx.params[p.name] in (None, False, (), p.default), f"{where}: uses the old spelling {p.opts}"
        if isinstance(p, click.Argument) and p.name == "model" and p.metavar == "MODEL":
            assert ctx.params["model"], f"{where}: bitedge {' '.join(path)} needs MODEL"


def test_docs_say_how_to_point_at_ssh_files_and_the_results_database():
    text = "\n".join(d.read_text() for d in DOCS)
    for word in ("--known-hosts", "--ssh-config", "BITEDGE_RESULTS"):
        assert word in text


# ---- conflicts, old spellings, --db ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("grammar") / "m.gguf"
    write_gguf(dummy_source("test", seed=3), path, packing="i2_s", embed_type="f16")
    return path


def test_two_targets_are_an_error_naming_both(capsys):
    assert main(["build", "--target", "rpi5", "rpi4"]) == 2
    err = capsys.readouterr().err
    assert "--target rpi5" in err and "rpi4" in err and err.count("\n") == 1


def test_model_given_twice_is_an_error(model, capsys):
    assert main(["inspect", str(model), "--model", str(model)]) == 2
    assert "MODEL given twice" in capsys.readouterr().err


def test_an_old_spelling_works_with_one_warning_line(model, tmp_path, capsys):
    assert main(["kernels", "--model", str(model), "--target", "x86-64-avx2", "--out-dir", str(tmp_path / "k"),
                 "--json"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--model FILE is deprecated" in warnings[0]
    assert (tmp_path / "k" / "bitedge_i2s_avx2.c").exists() or captured.out.count("files")


def test_an_explicit_target_wins_over_the_inventory_and_says_so():
    from bitedge import api
    from bitedge.deploy.ssh import HostSpec

    said = []
    spec = HostSpec(name="pi", host="pi", target="x86-64-avx2")
    t = api.board_target(spec, None, "rpi5-qemu", say=said.append)  # no probe: nothing to ask the board
    assert t.id == "rpi5-qemu" and said == ["pi: using --target rpi5-qemu (the inventory says x86-64-avx2)"]
    assert api.board_target(spec, None, None).id == "x86-64-avx2"


@pytest.mark.parametrize("argv", [["report"], ["results", "export"]])
def test_a_mistyped_db_is_an_error_not_an_empty_database(tmp_path, capsys, argv):
    db = tmp_path / "resluts.db"
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert str(db) in err and "no results database" in err and not db.exists()


def test_results_export_json(tmp_path, capsys):
    db = tmp_path / "r.db"
    ResultStore(db).add(rows_from_bench({"results": [{"n_prompt": 8, "n_gen": 0, "n_threads": 1, "avg_ts": 5.0}]},
                                        board="b", target="t", model="m", model_sha256="x", method="i2_s"))
    import json

    assert main(["results", "export", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["board"] == "b"
    assert main(["results", "export", "--db", str(db), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["board"] == "b" and "deprecated" in captured.err


def test_generate_builds_in_the_cache_not_in_the_current_folder(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", str(model), "-p", "hi", "-n", "2", "--no-progress", "--json"]) == 0
    assert capsys.readouterr().err == ""  # --no-progress: nothing on stderr
    assert not (tmp_path / "build").exists()


# ---- report: methods pair by the source model ------------------------------------------------------------------------


def _rows(board, model, sha, source, method, pp, tg):
    bench = {"results": [{"n_prompt": 128, "n_gen": 0, "n_threads": 1, "avg_ts": pp, "stddev_ts": 1.0},
                         {"n_prompt": 0, "n_gen": 32, "n_threads": 1, "avg_ts": tg, "stddev_ts": 0.5}]}
    return rows_from_bench(bench, board=board, target="t", model=model, model_sha256=sha, source_sha256=source,
                           method=method)


@pytest.fixture
def method_rows():
    """Two boards, one model converted three ways (three files, one source), and a second model in I2_S only."""
    rows = []
    for board, f in (("pi5", 1.0), ("orin", 2.0)):
        rows += _rows(board, "m-i2s.gguf", "a1", "S", "i2_s", 100 * f, 20 * f)
        rows += _rows(board, "m-tl1.gguf", "a2", "S", "tl1", 150 * f, 30 * f)
        rows += _rows(board, "m-tl2.gguf", "a3", "S", "tl2", 120 * f, 25 * f)
        rows += _rows(board, "other.gguf", "b1", "T", "i2_s", 50 * f, 10 * f)
    return rows


def test_report_baseline_method_pairs_tl_files_with_i2s_by_source(method_rows, tmp_path, capsys):
    from bitedge.results.report import with_speedup

    sp = {(r.board, r.model, r.test): s for r, s in with_speedup(method_rows, "i2_s")}
    assert sp[("pi5", "m-tl1.gguf", "pp128")] == pytest.approx(1.5)
    assert sp[("orin", "m-tl2.gguf", "tg32")] == pytest.approx(1.25)
    assert sp[("pi5", "other.gguf", "pp128")] == pytest.approx(1.0)
    assert all(s is not None for s in sp.values())
    db = tmp_path / "r.db"
    ResultStore(db).add(method_rows)
    assert main(["report", "--db", str(db), "--baseline", "i2_s"]) == 0
    out = capsys.readouterr().out
    assert "| pi5 | m-tl1.gguf | tl1 | 1 | pp128 | 150.00 ± 1.00 | 1.50x |" in out
    assert main(["report", "m-tl1.gguf", "--db", str(db), "--host", "orin", "--json"]) == 0
    import json

    got = json.loads(capsys.readouterr().out)
    assert {(r["board"], r["model"]) for r in got} == {("orin", "m-tl1.gguf")}


def test_report_plots_have_no_empty_bars_and_one_colour_per_method(method_rows):
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer

    from bitedge.results.report import draw, plot_specs

    specs = plot_specs(method_rows, "i2_s")
    assert {s.filename for s in specs} == {"pp128.png", "pp128_speedup.png", "tg32.png", "tg32_speedup.png"}
    for spec in specs:
        fig = draw(spec)
        ax = fig.axes[0]
        colours = {}
        bar_containers = [c for c in ax.containers if isinstance(c, BarContainer)]
        for container in bar_containers:
            label = container.get_label()
            bars = [p for p in container.patches]
            assert bars and all(b.get_height() > 0 for b in bars), f"{spec.filename}: an empty bar in {label}"
            faces = {b.get_facecolor() for b in bars}
            assert len(faces) == 1, f"{spec.filename}: {label} has several colours"
            colours[label] = faces.pop()
        assert set(colours) == {"i2_s", "tl1", "tl2"}
        assert len(set(colours.values())) == 3, f"{spec.filename}: two methods share a colour"
        # groups: board x source model x threads; one bar per method that has a value, none missing or extra
        assert len(ax.get_xticks()) == 4 and sum(len(c.patches) for c in bar_containers) == 2 * (3 + 1)
        xs = sorted(p.get_x() for c in bar_containers for p in c.patches)
        widths = [p.get_width() for c in bar_containers for p in c.patches]
        assert all(b - a >= min(widths) * 0.999 for a, b in zip(xs, xs[1:])), "bars overlap"
        plt.close(fig)


def test_an_old_database_gains_the_source_column(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, board TEXT, cpu TEXT, target TEXT, model TEXT, "
                "model_sha256 TEXT, method TEXT, threads INTEGER, test TEXT, n_prompt INTEGER, n_gen INTEGER, "
                "avg_ts REAL, stddev_ts REAL)")
    con.execute("INSERT INTO runs (board, cpu, target, model, model_sha256, method, threads, test, n_prompt, n_gen, "
                "avg_ts, stddev_ts) VALUES ('b', 'c', 't', 'm', 'abc', 'i2_s', 1, 'pp8', 8, 0, 5.0, 0.1)")
    con.commit()
    con.close()
    rows = ResultStore(db, create=False).rows()
    assert len(rows) == 1 and rows[0].source_sha256 == "abc"


# ---- a board without --target: its profile is probed ----------------------------------------------------------------


def test_generate_bench_and_tune_on_a_board_without_target_use_the_probed_profile(model, tmp_path, capsys):
    """The loopback sshd is this machine: no inventory target and no --target, so generate --host and bench --hosts
    take the profile bitedge probe suggests (and say so), as deploy does; so does tune --host."""
    import json

    from _sshd import make_sshd
    from bitedge.board import probe_local
    from bitedge.targets import suggest_targets

    expected = suggest_targets(probe_local().as_dict())[0]
    server = make_sshd(tmp_path / "sshd").start()
    try:
        inv = tmp_path / "inv.toml"
        inv.write_text(f'[hosts.b]\nhost = "board"\nremote_dir = "{tmp_path / "remote"}"\n')
        ssh = ["--inventory", str(inv), "--ssh-config", str(server.ssh_config), "--known-hosts",
               str(server.known_hosts), "--connect-timeout", "10"]
        assert main(["generate", str(model), "--host", "b", "-p", "hi", "-n", "2", *ssh, "--json"]) == 0
        captured = capsys.readouterr()
        assert f"b: using target {expected} (from bitedge probe)" in captured.err
        assert len(json.loads(captured.out)["tokens"]) >= 1
        db = tmp_path / "r.db"
        assert main(["bench", str(model), "--hosts", "b", "--n-prompt", "4", "-n", "2", "-r", "1", "--db", str(db),
                     *ssh, "--json"]) == 0
        captured = capsys.readouterr()
        rows = json.loads(captured.out)["rows"]
        assert rows and {r["target"] for r in rows} == {expected}
        assert f"b: using target {expected} (from bitedge probe)" in captured.err
        cache = tmp_path / "tuning.json"
        assert main(["tune", str(model), "--host", "b", "--method", "tl1", "--reps", "1", "--rounds", "1",
                     "--cache", str(cache), *ssh, "--json"]) == 0
        captured = capsys.readouterr()
        out = json.loads(captured.out)
        assert out["target"] == expected and out["results"]
        assert f"b: using target {expected} (from bitedge probe)" in captured.err
    finally:
        server.stop()


def test_the_old_deploy_spelling_is_read_with_one_warning(tmp_path, capsys):
    """`deploy HOST --model FILE` still names the board: one warning, then the same work (here: the file is refused
    before any connection)."""
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model\n")
    assert main(["deploy", "pi5", "--model", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "deprecated: use FILE --host pi5" in lines[0] and str(bad) in lines[1]
    assert main(["deploy", "pi5"]) == 2
    assert "a board is --host pi5" in capsys.readouterr().err

