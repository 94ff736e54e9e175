"""The bitedge command line: thin click commands over the library API (tests call the API directly)."""

from __future__ import annotations

import sys

import click

from bitedge import __version__
from bitedge.errors import BitedgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bitedge")
def cli() -> None:
    """bitedge: ternary (BitNet b1.58) LLMs from a workstation to ARM and x86 edge boards."""


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
