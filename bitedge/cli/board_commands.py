"""Commands that talk to boards: deploy, bench, probe."""

from __future__ import annotations

import click

from bitedge.cli._common import (_say, _thread_list, cli, db_option, host_option, hosts_options, model_argument,
                                 output_options, ssh_options, target_options)


@cli.command()
@model_argument(required=False)
@host_option("The board (required)")
@target_options("Target profile of the board (default: the inventory's, else bitedge probe's suggestion; an "
                "explicit --target wins over the inventory's).")
@ssh_options
@output_options(has_progress=True)
def deploy(model, host, target, targets_dirs, ssh, out):
    """Build for the board, upload the runtime (and MODEL, when given) over SSH, sha256-checked and resumable, and
    check they run."""
    from bitedge import api

    if not host:
        raise click.UsageError("which board? give --host BOARD")
    m = api.Model.read(model) if model else None
    spec = api.boards([host], ssh)[0]
    with api.deploy(spec, ssh, m, target=target, targets_dirs=targets_dirs, say=out.say, note=_say,
                    show_progress=out.show_progress) as board:
        dep, t = board.deployment, board.target

    def human(_):
        for up in dep.uploads:
            click.echo(f"{up.action:>8}  {up.remote_path}  ({up.size / 1e6:.1f} MB, sha256 {up.sha256[:12]}…)")
        if dep.check and not dep.model:  # a runtime-only deploy: what the board's CPU check said
            click.echo(f"{host}: {dep.check}")
        click.echo(f"{host}: bitedge-run for {t.id} is ready in {dep.remote_dir}")

    out.result({"target": t.id, **dep.as_dict()}, human)


@cli.command()
@model_argument()
@click.option("--n-prompt", type=click.IntRange(0), default=128, show_default=True, help="Prompt tokens (pp test).")
@click.option("-p", "old_p", hidden=True)
@click.option("-n", "--n-gen", type=click.IntRange(0), default=128, show_default=True, help="Generated tokens (tg test).")
@click.option("-t", "--threads", default="1", show_default=True, callback=_thread_list,
              help="Thread counts, comma-separated.")
@click.option("-r", "--reps", type=click.IntRange(min=1), default=5, show_default=True)
@target_options("Target profile (default: this machine; on boards: the inventory's, else bitedge probe's "
                "suggestion per board).")
@hosts_options("Benchmark on this board.", "Comma-separated boards, benchmarked in parallel.")
@db_option(writes=True)
@click.option("--method", default=None, help="Kernel method label stored with the results (default: the model's packing).")
@ssh_options
@output_options(has_progress=True)
def bench(model, n_prompt, old_p, n_gen, threads, reps, target, targets_dirs, names, store, method, ssh, out):
    """Prompt-processing and generation tokens/s (mean ± sd) of MODEL, here or on boards; results go to the
    database."""
    from dataclasses import asdict

    from bitedge import api
    from bitedge.deploy.fleet import raise_if_failed, summary_line
    from bitedge.results.report import markdown_table

    if old_p is not None:
        raise click.UsageError(f"-p is prompt text in every command: bench's prompt length is --n-prompt {old_p}")
    m = api.Model.read(model)
    plan = api.BenchPlan(n_prompt, n_gen, threads, reps, method)
    if not names:
        rows = api.bench_here(api.resolve_target(target, targets_dirs), m, plan, say=out.say)
        outcomes = []
    else:
        outcomes = api.bench_fleet(api.boards(names, ssh), ssh, m, plan, target=target, targets_dirs=targets_dirs,
                                   note=_say)
        rows = [r for o in outcomes if o.ok for r in o.result]
    store.add(rows)
    out.result({"rows": [asdict(r) for r in rows], "failed": {o.host: o.error for o in outcomes if not o.ok}},
               lambda _: rows and click.echo(markdown_table(rows), nl=False))
    if outcomes:
        raise_if_failed(outcomes)  # exit 1 when some boards failed, 2 when all did
        click.echo(summary_line(outcomes), err=True)


@cli.command()
@host_option("The board", required=True)
@ssh_options
@output_options()
def probe(host, ssh, out):
    """Find a board's OS, architecture and CPU features, and suggest a target profile."""
    from bitedge import api

    spec = api.boards([host], ssh)[0]
    with api.connect(spec, ssh) as conn:
        info = api.probe(conn)

    def human(info):
        for key in ("os", "arch", "cpu", "board", "cores", "mem_mb"):
            if info.get(key):
                click.echo(f"{key:>10}: {info[key]}")
        click.echo(f"{'features':>10}: {' '.join(info['features']) or '(none detected)'}")
        click.echo(f"{'target':>10}: {', '.join(info['suggested_targets']) or 'no shipped profile matches: add one (docs/targets.md)'}")

    out.result(info, human)

