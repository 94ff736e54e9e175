"""The bitedge command line: thin click commands over the library API (tests call the API directly)."""

from __future__ import annotations

import sys

import click

from bitedge import __version__
from bitedge.errors import BitedgeError
from bitedge.output import print_json


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bitedge")
def cli() -> None:
    """bitedge: ternary (BitNet b1.58) LLMs from a workstation to ARM and x86 edge boards."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def ssh_options(f):
    """Options every command that talks to boards shares."""
    f = click.option("--inventory", type=click.Path(dir_okay=False), help="bitedge inventory (TOML) of boards.")(f)
    f = click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh_config file to read instead of ~/.ssh/config.")(f)
    f = click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh/known_hosts).")(f)
    f = click.option("--accept-new-host-key", is_flag=True, help="Trust and record a host key never seen before (never a changed one).")(f)
    f = click.option("--connect-timeout", type=float, default=15.0, show_default=True, help="Seconds to wait for a connection.")(f)
    return f


def _connect(spec, opts):
    from bitedge.deploy.ssh import connect

    return connect(spec, ssh_config=opts["ssh_config"], known_hosts=opts["known_hosts"],
                   accept_new_host_key=opts["accept_new_host_key"], connect_timeout=opts["connect_timeout"])


def _hosts(names, inventory):
    from bitedge.deploy.inventory import load_inventory, resolve_hosts

    return resolve_hosts(list(names), load_inventory(inventory) if inventory else None)


@cli.command()
@click.argument("host")
@ssh_options
@json_option
def probe(host, as_json, **opts):
    """Find a board's OS, architecture and CPU features, and suggest a target profile."""
    from bitedge.deploy.probe import probe as probe_board

    spec = _hosts([host], opts["inventory"])[0]
    with _connect(spec, opts) as conn:
        info = probe_board(conn).as_dict()
    info["suggested_targets"] = _suggest_targets(info)
    if as_json:
        print_json(info)
        return
    for key in ("os", "arch", "cpu", "board", "cores", "mem_mb"):
        if info.get(key):
            click.echo(f"{key:>10}: {info[key]}")
    click.echo(f"{'features':>10}: {' '.join(info['features']) or '(none detected)'}")
    click.echo(f"{'target':>10}: {', '.join(info['suggested_targets']) or 'no shipped profile matches: add one (docs/targets.md)'}")


def _suggest_targets(info: dict) -> list[str]:
    try:
        from bitedge.build.targets import suggest_targets
    except ImportError:
        return []
    return suggest_targets(info)


@cli.group()
def results():
    """The benchmark results database."""


@results.command("export")
@click.option("--db", type=click.Path(dir_okay=False), help="Results database (default ~/.local/share/bitedge/results.db).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
def results_export(db, fmt, output):
    """Export every stored benchmark run as CSV or JSON."""
    from bitedge.results.store import DEFAULT_DB, ResultStore

    text = ResultStore(db or DEFAULT_DB).export(fmt)
    _write_text(output, text)


@cli.command()
@click.option("--db", type=click.Path(dir_okay=False), help="Results database (default ~/.local/share/bitedge/results.db).")
@click.option("--baseline", help="A board or kernel method to compute speedups against.")
@click.option("--board", "boards", multiple=True, help="Only these boards.")
@click.option("--model", "models", multiple=True, help="Only these models.")
@click.option("--all-runs", is_flag=True, help="Every run over time, not just the newest per board/model/method/threads/test.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Also write the table as CSV.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write PNG plots into this folder.")
@json_option
def report(db, baseline, boards, models, all_runs, csv_out, plots, as_json):
    """Compare boards, models and kernel methods: markdown table, CSV and PNG plots."""
    from dataclasses import asdict

    from bitedge.results.report import csv_table, latest, markdown_table, plot, with_speedup
    from bitedge.results.store import DEFAULT_DB, ResultStore

    rows = ResultStore(db or DEFAULT_DB).rows()
    rows = [r for r in rows if (not boards or r.board in boards) and (not models or r.model in models)]
    if not rows:
        raise BitedgeError("no benchmark results stored yet (run bitedge bench first)")
    if not all_runs:
        rows = latest(rows)
    if csv_out:
        _write_text(csv_out, csv_table(rows, baseline))
    written = plot(rows, plots, baseline) if plots else []
    if as_json:
        print_json([{**asdict(r), "speedup": sp} for r, sp in with_speedup(rows, baseline)])
        return
    click.echo(markdown_table(rows, baseline), nl=False)
    for path in written:
        click.echo(f"plot: {path}", err=True)


def _write_text(path, text: str) -> None:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if not path:
        click.echo(text, nl=False)
        return
    import os
    from pathlib import Path

    target = Path(path)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: a BitedgeError becomes one line on stderr and exit status 2, never a traceback."""
    try:
        rv = cli.main(args=argv, prog_name="bitedge", standalone_mode=False)
    except BitedgeError as e:
        click.echo(f"bitedge: error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("bitedge: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("bitedge: interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
