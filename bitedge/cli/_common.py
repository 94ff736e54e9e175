"""What the bitedge commands share: the click group, option bundles (--json, the SSH options, --targets-dir), the
board and build helpers the commands call, and small parsers. The commands themselves are in the *_commands
modules of this package, one per group."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from bitedge import __version__
from bitedge.errors import BitedgeError
from bitedge.output import progress, write_text_atomic


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bitedge")
def cli() -> None:
    """bitedge: ternary (BitNet b1.58) LLMs from a workstation to ARM and x86 edge boards."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")

PACKINGS = ["i2_s", "tl1", "tl2", "tq2_0"]
EMBED_TYPES = ["f16", "f32", "q8_0"]


@contextmanager
def _byte_progress(description: str, total: int, enabled: bool = True):
    with progress(description, total, unit="bytes", enabled=enabled) as advance:
        yield advance


def ssh_options(f):
    """Options every command that talks to boards shares."""
    f = click.option("--inventory", type=click.Path(dir_okay=False), help="bitedge inventory (TOML) of boards.")(f)
    f = click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh_config file to read instead of ~/.ssh/config.")(f)
    f = click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh/known_hosts).")(f)
    f = click.option("--accept-new-host-key", is_flag=True, help="Trust and record a host key never seen before (never a changed one).")(f)
    f = click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
                     help="Seconds to wait for a connection.")(f)
    f = click.option("--stall-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
                     help="Give up on a board that answers nothing for this many seconds during a transfer or command.")(f)
    return f


def _connect(spec, opts):
    from bitedge.deploy.ssh import connect

    return connect(spec, ssh_config=opts["ssh_config"], known_hosts=opts["known_hosts"],
                   accept_new_host_key=opts["accept_new_host_key"], connect_timeout=opts["connect_timeout"],
                   stall_timeout=opts["stall_timeout"])


def _hosts(names, inventory):
    from bitedge.deploy.inventory import load_inventory, resolve_hosts

    return resolve_hosts(list(names), load_inventory(inventory) if inventory else None)


targets_dir_option = click.option("--targets-dir", "targets_dirs", multiple=True, type=click.Path(file_okay=False),
                                  help="Another folder of target profiles (*.toml).")


def _say(message: str) -> None:
    click.echo(message, err=True)


def build_for(target_name: str | None, *, clean: bool = False, quiet: bool = False, model=None, **kw):
    """(Target, BuildResult) for a target name, or for this machine when None; with a model, the TL kernels are
    specialised to its shapes (every build runs every packing)."""
    from bitedge.build.compile import build_runtime
    from bitedge.board import host_target_id
    from bitedge.targets import get_target

    target = get_target(target_name or host_target_id(), kw.pop("targets_dirs", ()))
    return target, build_runtime(target, model=model, clean=clean, progress=None if quiet else _say, **kw)


def _local_runner(target) -> list[str] | None:
    return list(target.runner) if target.emulated else None


def _deploy_to(spec, target_name, model, opts, quiet=False):
    """Connect, build for the board's target, deploy (skipping unchanged files). Returns (conn, target, deployment)."""
    from bitedge.deploy.remote import deploy as deploy_files

    target_name = spec.target or target_name
    if not target_name:
        raise BitedgeError(f"{spec.name}: which target profile? pass --target (bitedge probe {spec.name} suggests one)")
    target, result = build_for(target_name, quiet=quiet, model=model)
    conn = _connect(spec, opts)
    try:
        size = result.binary.stat().st_size + (Path(model).stat().st_size if model else 0)
        with progress(f"upload → {spec.name}", size, unit="bytes", enabled=not quiet) as advance:
            dep = deploy_files(conn, spec, result.binary, model, runner=_local_runner(target), progress=advance)
    except BaseException:
        conn.close()
        raise
    return conn, target, dep, result


def _thread_list(ctx, param, value: str) -> str:
    """'1,2,4' (positive integers) as the runtime takes it; anything else is a usage error."""
    parts = [p.strip() for p in str(value).split(",")]
    if not all(p.isdigit() and 0 < int(p) <= 1024 for p in parts):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of thread counts (1 to 1024), e.g. 1,2,4")
    return ",".join(str(int(p)) for p in parts)


def _prompt_text(prompt: str) -> str:
    """The prompt as valid text: bytes that are not UTF-8 (surrogate escapes from the command line) are refused."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raw = prompt.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BitedgeError(f"-p: the prompt is not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})") from None
        return raw.decode("utf-8")
    return prompt


def _packing_of(model: str) -> str:
    from bitedge.gguf_read import read_metadata

    return str(read_metadata(model).get("kv", {}).get("bitedge.weight_packing", "unknown"))


def _null():
    from contextlib import nullcontext

    return nullcontext()


def _suggest_targets(info: dict) -> list[str]:
    from bitedge.targets import suggest_targets

    return suggest_targets(info)


def _write_text(path, text: str) -> None:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path:
        write_text_atomic(path, text)
    else:
        click.echo(text, nl=False)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
