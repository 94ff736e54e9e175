"""Commands over the results database: results export, report."""

from __future__ import annotations

import click

from bitedge.cli._common import _write_text, cli, db_option, deprecated, hosts_options, output_options
from bitedge.errors import BitedgeError


@cli.group()
def results():
    """The benchmark results database."""


@results.command("export")
@db_option(writes=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option("--format", "old_format", type=click.Choice(["csv", "json"]), hidden=True)
@output_options()
def results_export(store, output, old_format, out):
    """Export every stored benchmark run: CSV, or JSON with --json."""
    if old_format:
        deprecated(f"--format {old_format}", "--json for JSON (CSV is the default)")
    _write_text(output, store.export("json" if out.json or old_format == "json" else "csv"))


@cli.command()
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@db_option(writes=False)
@click.option("--baseline", help="A board or kernel method to compute speedups against (methods pair rows by the "
              "source model, so TL1 and I2_S files of one model compare).")
@hosts_options("Only this board.", "Only these boards (comma-separated).", deprecated_alias="--board")
@click.option("--model", "old_models", multiple=True, hidden=True)
@click.option("--all-runs", is_flag=True, help="Every run over time, not just the newest per board/model/method/threads/test.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Also write the table as CSV to this file.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write PNG plots into this folder.")
@output_options()
def report(models, store, baseline, names, old_models, all_runs, csv_out, plots, out):
    """Compare boards, models and kernel methods: markdown table, CSV and PNG plots.

    MODEL...: only these models (file names or paths)."""
    from dataclasses import asdict
    from pathlib import Path

    from bitedge.results.report import csv_table, latest, markdown_table, plot, with_speedup

    if old_models:
        deprecated("--model NAME", "the model names as arguments (MODEL...)")
    wanted = {Path(m).name for m in (*models, *old_models)}
    rows = [r for r in store.rows() if (not names or r.board in names) and (not wanted or r.model in wanted)]
    if not rows:
        raise BitedgeError(f"{store.path}: no benchmark results stored" + (" for these boards/models" if names or wanted
                                                                           else " yet (run bitedge bench first)"))
    if not all_runs:
        rows = latest(rows)
    if csv_out:
        _write_text(csv_out, csv_table(rows, baseline))
    written = plot(rows, plots, baseline) if plots else []
    out.result([{**asdict(r), "speedup": sp} for r, sp in with_speedup(rows, baseline)],
               lambda _: click.echo(markdown_table(rows, baseline), nl=False))
    for path in written:
        click.echo(f"plot: {path}", err=True)
