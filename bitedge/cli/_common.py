"""What the bitedge commands share: the click group, the grammar's options (each defined once here) and the one
output helper. The work is in bitedge.api; the commands are in the *_commands modules of this package.

The grammar (docs/architecture.md, "The command line"):
- MODEL, the GGUF file a command works on, is always the first positional argument (required where the command
  cannot work without one, optional where it can: deploy, build, demo).
- A board is always `--host BOARD`; a fleet `--hosts a,b,c` (bench); report filters with the same two.
- `-p` is always prompt text; `-o` always an output file; output folders are `--out-dir` (`--plots` for report's).
- `--json` wherever a command has a result to print; `--no-progress` wherever it shows progress;
  `--targets-dir` wherever it takes `--target`; `--db` (default $BITEDGE_RESULTS) wherever it uses results.
- An explicit flag is never silently overridden: two flags that disagree are an error naming both, except
  `--target` over an inventory's target, where the explicit flag wins and says so.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass

import click

from bitedge import __version__
from bitedge.errors import BitedgeError
from bitedge.output import print_json, progress, write_text_atomic


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bitedge")
def cli() -> None:
    """bitedge: ternary (BitNet b1.58) LLMs from a workstation to ARM and x86 edge boards."""


PACKINGS = ["i2_s", "tl1", "tl2", "tq2_0"]
EMBED_TYPES = ["f16", "f32", "q8_0", "q6_k", "q4_0"]  # bitedge.formats.float_quants.EMBED_TYPES


def _say(message: str) -> None:
    click.echo(message, err=True)


def deprecated(old: str, new: str) -> None:
    """One warning line for an old spelling that still works."""
    _say(f"bitedge: warning: {old} is deprecated: use {new}")


def _inject(f, build):
    """Wrap a command function: build(kwargs) pops the grammar's raw options and adds what the command takes."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        build(kwargs)
        return f(*args, **kwargs)

    return wrapper


# ---- output: --json and --no-progress -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """How a command prints: result() is the one --json switch; say() and bar() are progress on stderr (silent
    with --json or --no-progress)."""

    json: bool
    show_progress: bool

    def result(self, data, human=None) -> None:
        """data as JSON on stdout with --json; else human(data) prints it for people (nothing when None)."""
        if self.json:
            print_json(data)
        elif human is not None:
            human(data)

    def say(self, message: str) -> None:
        if self.show_progress:
            _say(message)

    @contextmanager
    def bar(self, description: str, total: float | None, unit: str = ""):
        with progress(description, total, unit=unit, enabled=self.show_progress) as advance:
            yield advance


def output_options(has_progress: bool = False):
    """--json (and --no-progress when the command shows progress), given to the command as `out: Output`."""

    def deco(f):
        def build(kw):
            as_json, no_progress = kw.pop("as_json"), kw.pop("no_progress", False)
            kw["out"] = Output(as_json, not (as_json or no_progress))

        wrapper = _inject(f, build)
        if has_progress:
            wrapper = click.option("--no-progress", is_flag=True, help="No progress bars or build lines on stderr.")(wrapper)
        return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(wrapper)

    return deco


# ---- the model -----------------------------------------------------------------------------------------------------


def model_argument(required: bool = True, exists: bool = True, dir_okay: bool = False):
    """MODEL, the first positional argument; the old `--model FILE` still works (hidden, one warning line)."""

    def deco(f):
        def build(kw):
            alias, model = kw.pop("model_alias"), kw["model"]
            # the old `deploy HOST --model FILE`: a first argument that is no file, and no --host
            old_host = model is not None and kw.get("host", "") is None and not _looks_like_a_file(model)
            if alias is not None and old_host:
                deprecated("HOST --model FILE", f"FILE --host {model}")
                kw["host"], model = model, None
            if alias is not None:
                if model is not None:
                    raise click.UsageError(f"MODEL given twice: {model} and --model {alias}")
                if not old_host:
                    deprecated("--model FILE", "the model as the first argument (MODEL)")
                model = alias
            if required and model is None:
                raise click.UsageError("missing the MODEL argument (a .gguf file)")
            if exists and model is not None and not os.path.exists(model):
                hint = f" (a board is --host {model})" if old_host else ""
                raise click.BadParameter(f"{model!r} does not exist{hint}", param_hint="'MODEL'")
            kw["model"] = model

        wrapper = _inject(f, build)
        path = click.Path(dir_okay=dir_okay)
        wrapper = click.option("--model", "model_alias", type=path, hidden=True)(wrapper)
        return click.argument("model", required=False, type=path, metavar="MODEL" if required else "[MODEL]")(wrapper)

    return deco


def _looks_like_a_file(name: str) -> bool:
    return os.path.exists(name) or "/" in name or name.endswith(".gguf")


# ---- targets -------------------------------------------------------------------------------------------------------


targets_dir_option = click.option("--targets-dir", "targets_dirs", multiple=True, type=click.Path(file_okay=False),
                                  help="Another folder of target profiles (*.toml); repeatable.")


def target_options(help: str):
    """--target and --targets-dir, always together."""

    def deco(f):
        return click.option("--target", help=help)(targets_dir_option(f))

    return deco


# ---- boards --------------------------------------------------------------------------------------------------------


def ssh_options(f):
    """The options every command that talks to boards shares, given to the command as `ssh: api.SshOptions`."""
    from bitedge.api import SshOptions

    names = ("inventory", "ssh_config", "known_hosts", "accept_new_host_key", "connect_timeout", "stall_timeout")

    def build(kw):
        kw["ssh"] = SshOptions(**{n: kw.pop(n) for n in names})

    f = _inject(f, build)
    f = click.option("--inventory", type=click.Path(dir_okay=False), help="bitedge inventory (TOML) of boards.")(f)
    f = click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh_config file to read instead of ~/.ssh/config.")(f)
    f = click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh/known_hosts).")(f)
    f = click.option("--accept-new-host-key", is_flag=True, help="Trust and record a host key never seen before (never a changed one).")(f)
    f = click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=15.0, show_default=True,
                     help="Seconds to wait for a connection.")(f)
    f = click.option("--stall-timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
                     help="Give up on a board that answers nothing for this many seconds during a transfer or command.")(f)
    return f


def host_option(help: str, required: bool = False):
    return click.option("--host", required=required, help=help + " (an ssh_config alias, user@host[:port] or an "
                        "inventory name).")


def hosts_options(help_one: str, help_many: str, deprecated_alias: str | None = None):
    """--host BOARD and --hosts a,b,c, given to the command as `names` (a list; empty: none given)."""

    def deco(f):
        def build(kw):
            one, many = kw.pop("host"), kw.pop("hosts")
            old = kw.pop("old_boards", ())
            if old:
                deprecated(deprecated_alias, "--host / --hosts")
            raw = [*([one] if one is not None else []), *old, *([many] if many is not None else [])]
            names = [one.strip()] if one is not None else []
            names += [h.strip() for h in old]
            names += [h.strip() for h in many.split(",")] if many is not None else []
            if not all(names):
                raise BitedgeError(f"--host/--hosts: an empty board name in {raw}")
            kw["names"] = names

        wrapper = _inject(f, build)
        if deprecated_alias:
            wrapper = click.option(deprecated_alias, "old_boards", multiple=True, hidden=True)(wrapper)
        wrapper = click.option("--hosts", help=help_many)(wrapper)
        return click.option("--host", help=help_one)(wrapper)

    return deco


# ---- results -------------------------------------------------------------------------------------------------------


def db_option(writes: bool):
    """--db PATH, given to the command as `store: ResultStore`. A command that only reads refuses a database that
    does not exist (a mistyped --db must not look like an empty one); a command that writes creates it."""
    from bitedge.results.store import DEFAULT_DB

    def deco(f):
        def build(kw):
            from bitedge.results.store import ResultStore

            kw["store"] = ResultStore(kw.pop("db") or DEFAULT_DB, create=writes)

        wrapper = _inject(f, build)
        return click.option("--db", type=click.Path(dir_okay=False),
                            help=f"Results database (default $BITEDGE_RESULTS or {DEFAULT_DB}).")(wrapper)

    return deco


# ---- small parsers -------------------------------------------------------------------------------------------------


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


def _write_text(path, text: str) -> None:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path:
        write_text_atomic(path, text)
    else:
        click.echo(text, nl=False)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
