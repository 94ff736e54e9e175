"""Commands that talk to boards: deploy, bench, probe."""

from __future__ import annotations

from pathlib import Path

import click

from bitedge.cli._common import (_connect, _deploy_to, _hosts, _local_runner, _packing_of, _say, _suggest_targets,
                                 _thread_list, build_for, cli, json_option, ssh_options)
from bitedge.errors import BitedgeError
from bitedge.output import print_json


@cli.command()
@click.argument("host")
@click.option("--target", help="Target profile of the board (default: the inventory's, or bitedge probe's suggestion).")
@click.option("--model", type=click.Path(exists=True, dir_okay=False), help="GGUF model to upload too.")
@ssh_options
@json_option
def deploy(host, target, model, as_json, **opts):
    """Build for the board, upload runtime and model over SSH (sha256-checked, resumable) and check they run."""
    spec = _hosts([host], opts["inventory"])[0]
    if not (spec.target or target):
        with _connect(spec, opts) as conn:
            from bitedge.deploy.probe import probe as probe_board

            suggested = _suggest_targets(probe_board(conn).as_dict())
        if not suggested:
            raise BitedgeError(f"{host}: no shipped target profile fits this board: add one (docs/targets.md)")
        target = suggested[0]
        _say(f"{host}: using target {target} (from bitedge probe)")
    conn, t, dep, _ = _deploy_to(spec, target, model, opts, quiet=as_json)
    conn.close()
    if as_json:
        print_json({"target": t.id, **dep.as_dict()})
        return
    for up in dep.uploads:
        click.echo(f"{up.action:>8}  {up.remote_path}  ({up.size / 1e6:.1f} MB, sha256 {up.sha256[:12]}…)")
    click.echo(f"{host}: bitedge-run for {t.id} is ready in {dep.remote_dir}")


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-p", "--n-prompt", type=int, default=128, show_default=True, help="Prompt tokens (pp test).")
@click.option("-n", "--n-gen", type=int, default=128, show_default=True, help="Generated tokens (tg test).")
@click.option("-t", "--threads", default="1", show_default=True, callback=_thread_list,
              help="Thread counts, comma-separated.")
@click.option("-r", "--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--target", help="Target profile (default: this machine, or the board's).")
@click.option("--host", "hosts", multiple=True, help="Benchmark on this board (repeatable).")
@click.option("--hosts", "hosts_csv", help="Comma-separated boards, benchmarked in parallel.")
@click.option("--db", type=click.Path(dir_okay=False), help="Results database (default ~/.local/share/bitedge/results.db).")
@click.option("--method", default=None, help="Kernel method label stored with the results (default: the model's packing).")
@ssh_options
@json_option
def bench(model, n_prompt, n_gen, threads, reps, target, hosts, hosts_csv, db, method, as_json, **opts):
    """Prompt-processing and generation tokens/s (mean ± sd), here or on boards; results go to the database."""
    from bitedge.deploy.fleet import run_fleet, summary_line
    from bitedge.model import sha256_file
    from bitedge.results.report import markdown_table
    from bitedge.results.store import DEFAULT_DB, ResultStore, rows_from_bench

    names = [h.strip() for h in hosts] + ([h.strip() for h in hosts_csv.split(",")] if hosts_csv is not None else [])
    if not all(names):
        raise BitedgeError(f"--host/--hosts: an empty board name in {[*hosts, *([hosts_csv] if hosts_csv is not None else [])]}")
    model_sha = sha256_file(model)
    method = method or _packing_of(model)
    store = ResultStore(db or DEFAULT_DB)
    context = dict(model=Path(model).name, model_sha256=model_sha, method=method)
    if not names:
        from bitedge.native import run_bench

        t, built = build_for(target, quiet=as_json, model=model)
        out = run_bench(built.binary, model, n_prompt, n_gen, [int(x) for x in threads.split(",")], reps,
                        runner=_local_runner(t))
        import socket

        rows = rows_from_bench(out, board=socket.gethostname(), target=t.id, toolchain=built.toolchain.id, **context)
        store.add(rows)
        outcomes = []
    else:
        from bitedge.deploy.remote import remote_bench

        def job(spec):
            conn, t, dep, built = _deploy_to(spec, target, model, opts, quiet=True)
            with conn:
                out = remote_bench(conn, dep, n_prompt=n_prompt, n_gen=n_gen, threads=threads, reps=reps)
            return rows_from_bench(out, board=spec.name, target=t.id, toolchain=built.toolchain.id,
                                   cpu=dep.board.cpu, **context)

        outcomes = run_fleet(_hosts(names, opts["inventory"]), job)
        rows = [r for o in outcomes if o.ok for r in o.result]
        store.add(rows)
    if as_json:
        from dataclasses import asdict

        print_json({"rows": [asdict(r) for r in rows],
                    "failed": {o.host: o.error for o in outcomes if not o.ok}})
    elif rows:
        click.echo(markdown_table(rows), nl=False)
    if outcomes:
        from bitedge.deploy.fleet import raise_if_failed

        raise_if_failed(outcomes)  # exit 1 when some boards failed, 2 when all did
        click.echo(summary_line(outcomes), err=True)


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
