"""The bitedge command line: thin click commands over the library API (tests call the API directly).

One module per command group (model_commands, build_commands, board_commands, results_commands, serve_commands),
what they share in _common; main() is the entry point that turns every failure into one line."""

from __future__ import annotations

import click

# importing a command module registers its commands on the group
from bitedge.cli import board_commands, build_commands, model_commands, results_commands, serve_commands  # noqa: F401
from bitedge.cli._common import _one_line, cli
from bitedge.errors import BitedgeError


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that every `finally` and partial-file cleanup runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point: every failure is one line on stderr, never a traceback.

    Exit status: 0 ok; 2 bad input or environment (BitedgeError, a usage error, a file that cannot be read or
    written); 1 some boards of a fleet failed; 130 interrupted, 143 terminated (partial files removed either
    way); 70 a bug (one line too; BITEDGE_DEBUG=1 shows its traceback)."""
    import os
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding program): leave signals alone
        previous = None
    try:
        rv = cli.main(args=argv, prog_name="bitedge", standalone_mode=False)
    except BitedgeError as e:
        click.echo(f"bitedge: error: {_one_line(e)}", err=True)
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("bitedge: interrupted", err=True)
        return 130
    except _Terminated:
        click.echo("bitedge: terminated", err=True)
        return 143
    except click.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        click.echo(f"bitedge: error: {_one_line(e.format_message())}{hint}", err=True)
        return 2
    except BrokenPipeError:
        return 0
    except OSError as e:  # a file or folder the user named that cannot be read or written
        if os.environ.get("BITEDGE_DEBUG"):
            raise
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"bitedge: error: {where}{_one_line(e.strerror or e)}", err=True)
        return 2
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("BITEDGE_DEBUG"):
            raise
        click.echo(f"bitedge: internal error (a bug, please report it; BITEDGE_DEBUG=1 shows the traceback): "
                   f"{type(e).__name__}: {_one_line(e)}", err=True)
        return 70
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return rv if isinstance(rv, int) else 0
