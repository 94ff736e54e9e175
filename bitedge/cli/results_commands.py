"""Commands over the results database: results export, report."""

from __future__ import annotations


import click

from bitedge.cli._common import _write_text, cli, json_option
from bitedge.errors import BitedgeError
from bitedge.output import print_json


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
