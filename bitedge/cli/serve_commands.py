"""The `bitedge serve` command; the work is in bitedge/serve.py."""

from __future__ import annotations

import posixpath
import time

import click

from bitedge.cli._common import _say, cli, host_option, model_argument, output_options, ssh_options, target_options
from bitedge.errors import BitedgeError


@cli.command()
@model_argument(required=False)
@host_option("Serve on this board over SSH (deploys first; the server runs detached there)")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port of the server.")
@click.option("--listen", default="127.0.0.1", show_default=True,
              help="Address the server binds (0.0.0.0: every interface, reachable from the network).")
@click.option("--forward", "forward_port", type=click.IntRange(1, 65535),
              help="With --host: tunnel 127.0.0.1:PORT here to the board's server until Ctrl-C.")
@click.option("--stop", is_flag=True, help="With --host: stop the board's server.")
@click.option("-t", "--threads", type=click.IntRange(1, 1024), default=1, show_default=True)
@click.option("--slots", type=click.IntRange(1, 256), default=4, show_default=True, help="Requests served at once.")
@click.option("-c", "--ctx", type=click.IntRange(2), help="Context per slot (default: the model's).")
@click.option("--decode-batch", type=click.IntRange(1, 256),
              help="Most slots' decode steps run as one batch (default: --slots; 1: the slots take turns).")
@click.option("--api-key", envvar="BITEDGE_API_KEY", help="Require Authorization: Bearer KEY (or $BITEDGE_API_KEY).")
@target_options("Target profile (here: emulated profiles run under their runner; with --host: default the "
                "inventory's, else bitedge probe's suggestion).")
@click.option("--start-timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for /health.")
@ssh_options
@output_options(has_progress=True)
def serve(model, host, port, listen, forward_port, stop, threads, slots, ctx, decode_batch, api_key, target,
          targets_dirs, start_timeout, ssh, out):
    """Serve MODEL over an OpenAI-compatible HTTP API (docs/serve.md): here in the foreground, or on a board."""
    from bitedge import api
    from bitedge import serve as srv

    if not host and (forward_port or stop):
        raise BitedgeError("--forward and --stop are for a board: add --host BOARD")
    if stop:
        spec = api.boards([host], ssh)[0]
        from bitedge.deploy.upload import resolve_remote_dir

        with api.connect(spec, ssh) as conn:
            pid = srv.stop_remote(conn, resolve_remote_dir(conn, spec.remote_dir))
        out.result({"host": host, "stopped": pid}, lambda _: click.echo(
            f"{host}: stopped the server (pid {pid})" if pid else f"{host}: no server was running"))
        return
    if not model:
        raise BitedgeError("which model? give MODEL (a .gguf file)")
    m = api.Model.read(model)
    args = dict(listen=listen, port=port, threads=threads, slots=slots, ctx=ctx, decode_batch=decode_batch)
    if not host:
        t = api.resolve_target(target, targets_dirs)
        built = api.build(t, m, say=out.say)
        command = [*(api.local_runner(t) or []), str(built.binary), *srv.server_args(model, **args)]
        return srv.run_local(command, api_key)
    if port == 0:
        raise BitedgeError("--port 0 is for a local server: a board's server needs a fixed port")
    spec = api.boards([host], ssh)[0]
    with api.deploy(spec, ssh, m, target=target, targets_dirs=targets_dirs, say=out.say, note=_say,
                    show_progress=out.show_progress) as board:
        conn, dep = board.conn, board.deployment
        command = dep.command(*srv.server_args(dep.model, **args))
        server = srv.start_remote(conn, dep.remote_dir, command, port, api_key=api_key, timeout=start_timeout)
        where = f"http://{listen}:{server.port}" if listen not in ("0.0.0.0", "::") else f"port {server.port}"

        def human(_):
            if server.started:
                click.echo(f"{host}: serving {posixpath.basename(dep.model)} at {where} on the board (pid {server.pid}, "
                           f"log {server.log})")
            else:
                click.echo(f"{host}: a server is already running there (pid {server.pid}, port {server.port}): not "
                           f"starting another; bitedge serve --host {host} --stop stops it")

        out.result(server.as_dict(), human)
        if forward_port:
            with srv.forward(conn, forward_port, server.port) as url:
                click.echo(f"forwarding {url} → {host}:{server.port} (open it in a browser; Ctrl-C ends the "
                           f"tunnel, the server keeps running)", err=out.json)
                while True:  # until Ctrl-C / SIGTERM; fabric's forwarding thread does the work
                    time.sleep(3600)
