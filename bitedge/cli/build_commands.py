"""Commands that build for a target: targets, doctor, build, kernels, tune."""

from __future__ import annotations


import click

from bitedge.cli._common import (_say, cli, deprecated, host_option, model_argument, output_options, ssh_options,
                                 target_options, targets_dir_option)
from bitedge.errors import BitedgeError


@cli.group(invoke_without_command=True)
@targets_dir_option
@output_options()
@click.pass_context
def targets(ctx, targets_dirs, out):
    """List the board profiles (targets/*.toml); `targets show ID` prints one."""
    ctx.obj = {"targets_dirs": targets_dirs}
    if ctx.invoked_subcommand:
        return
    from bitedge.targets import load_targets

    found = load_targets(targets_dirs)

    def human(_):
        for t in found.values():
            mark = " (emulated)" if t.emulated else ""
            click.echo(f"{t.id:<18} {t.os}/{t.arch:<8} {','.join(t.isa):<34} {t.kernel.method:<5} {t.name}{mark}")

    out.result([t.as_dict() for t in found.values()], human)


@targets.command("show")
@click.argument("name")
@output_options()
@click.pass_obj
def targets_show(obj, name, out):
    """Print one profile (by id or alias)."""
    from bitedge.targets import get_target

    t = get_target(name, obj["targets_dirs"])
    data = {**t.as_dict(), "path": str(t.path) if t.path else None}
    out.result(data, lambda d: [click.echo(f"{key:>10}: {value}") for key, value in d.items()])


@cli.command()
@click.option("--cc", help="A compiler command to consider too (as $CC).")
@output_options()
def doctor(cc, out):
    """Which toolchains can build which targets here, and what to install for the rest."""
    from bitedge.builder.doctor import doctor as doctor_rows

    rows = doctor_rows(cc=cc)

    def human(_):
        for r in rows:
            tool = f"{r.toolchain} {r.version}".strip() if r.toolchain else "NONE"
            runner = "" if r.runner is None else f"  runner {r.runner}: {'ok' if r.runner_ok else 'missing'}"
            fix = f"  → {r.fix}" if r.fix else ""
            click.echo(f"{r.target:<18} {tool:<34}{runner}{fix}")

    out.result([r.as_dict() for r in rows], human)


@cli.command()
@model_argument(required=False, exists=False)
@target_options("Target profile id or alias (default: this machine).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Output folder (default build/<target>).")
@click.option("--toolchain", help="Toolchain id (zig, gcc-cross, clang-cross, gcc, clang, cc).")
@click.option("--cc", help="A compiler command to use (a vendor cross gcc, say).")
@click.option("--clean", is_flag=True, help="Ignore cached builds.")
@output_options(has_progress=True)
def build(model, target, targets_dirs, out_dir, toolchain, cc, clean, out):
    """Cross-compile the runtime for a board: one static bitedge-run binary and a manifest.

    MODEL (optional): specialise the TL kernels to its matrix shapes (every build runs every packing)."""
    from pathlib import Path

    from bitedge import api

    target, model = _old_build_target(model, target, targets_dirs)
    t = api.resolve_target(target, targets_dirs)
    m = api.Model.read(model) if model else None
    result = api.build(t, m, out_dir=out_dir or Path("build") / t.id, clean=clean, toolchain=toolchain, cc=cc,
                       say=out.say)
    info = {"target": t.id, "binary": str(result.binary), "manifest": str(result.manifest), "cached": result.cached,
            "toolchain": result.toolchain.id}
    out.result(info, lambda i: click.echo(f"{i['binary']}  ({t.id}, {i['toolchain']}{', cached' if i['cached'] else ''})"))


def _old_build_target(model, target, targets_dirs):
    """`bitedge build TARGET` (the old spelling): a MODEL that is no file but a profile's name is taken as the target,
    with a warning; with --target too it is an error naming both. Returns (target, model)."""
    from pathlib import Path

    if model is None or Path(model).exists():
        return target, model
    from bitedge.targets import get_target

    try:
        get_target(model, targets_dirs)
    except BitedgeError:
        raise click.BadParameter(f"{model!r} does not exist", param_hint="'MODEL'") from None
    if target:
        raise BitedgeError(f"two targets: --target {target} and {model} (a target profile given as MODEL): give one "
                           f"--target")
    deprecated(f"bitedge build {model}", f"bitedge build --target {model}")
    return model, None


@cli.command()
@model_argument()
@target_options("Target profile id or alias (default: this machine).")
@click.option("--method", type=click.Choice(["tl1", "tl2"]),
              help="TL method to render (default: the profile's when it is one, else tl1; I2_S is not rendered: "
                   "bitedge-run's hand-written kernels are its one implementation).")
@click.option("--out-dir", type=click.Path(file_okay=False), default="build/kernels", show_default=True,
              help="Folder to render into.")
@click.option("--tuned/--no-tuned", default=True, show_default=True, help="Use tiles from the tuning cache when present.")
@output_options()
def kernels(model, target, targets_dirs, method, out_dir, tuned, out):
    """Render TL1/TL2 C kernels specialised to a board's ISA and MODEL's matrix shapes (jinja2 templates)."""
    from bitedge import api
    from bitedge.render import render_kernels
    from bitedge.render.tune import tuned_tiles

    t = api.resolve_target(target, targets_dirs)
    method = method or (t.kernel.method if t.kernel.method in ("tl1", "tl2") else "tl1")
    shapes = api.Model.read(model).shapes
    tiles = tuned_tiles(t, method, shapes) if tuned else None
    paths = render_kernels(t, shapes, method, tiles, out_dir)

    def human(_):
        for p in paths:
            click.echo(str(p))
        _say(f"{t.id}: {method} kernels for {len(shapes)} shapes{' (tuned tiles)' if tiles else ''} in {out_dir}")

    out.result({"target": t.id, "method": method, "shapes": shapes, "tuned": bool(tiles),
                "files": [str(p) for p in paths]}, human)


@cli.command()
@model_argument()
@target_options("Target profile (here: natively or under its runner; with --host: default the inventory's, else "
                "bitedge probe's suggestion).")
@click.option("--method", "methods", multiple=True, type=click.Choice(["i2_s", "tl1", "tl2"]),
              help="Methods to tune (default: all three).")
@host_option("Tune on this board over SSH")
@click.option("--estimate", is_flag=True, help="No board: pick tiles and method from llvm-mca static estimates "
              "(ARM boards; stored marked estimated, a measured result always wins).")
@click.option("--cache", type=click.Path(dir_okay=False), help="Tuning cache (default ~/.cache/bitedge/tuning.json).")
@click.option("--reps", type=click.IntRange(1), default=20, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Interleaved rounds over the candidates (the median counts).")
@ssh_options
@output_options(has_progress=True)
def tune(model, target, targets_dirs, methods, host, estimate, cache, reps, rounds, ssh, out):
    """Measure candidate tiles per method and shape of MODEL, here or on a board; keep the winners in the tuning
    cache."""
    from bitedge import api
    from bitedge.builder.tuner import fastest_method

    if estimate and host:
        raise BitedgeError("--estimate models the kernels here without a board; leave out --host (or --estimate)")
    m = api.Model.read(model)
    methods = methods or ("i2_s", "tl1", "tl2")
    spec = api.boards([host], ssh)[0] if host else None
    if estimate:
        from bitedge.render.estimate import estimate_tune

        t = api.resolve_target(target, targets_dirs)
        result = estimate_tune(t, m.shape_counts, methods, cache_path=cache, progress=out.say)
    elif spec is None:
        t = api.resolve_target(target, targets_dirs)
        result = api.tune(t, m, methods, cache=cache, reps=reps, rounds=rounds, show_progress=out.show_progress)
    else:
        with api.connect(spec, ssh) as conn:
            t = api.board_target(spec, conn, target, targets_dirs, _say)
            result = api.tune(t, m, methods, spec=spec, conn=conn, cache=cache, reps=reps, rounds=rounds,
                              show_progress=out.show_progress)
    fastest = fastest_method(result, m.shape_counts)
    out.result({"target": t.id, "host": spec.name if spec else None, "profile_method": t.kernel.method,
                "fastest": fastest, "results": result}, lambda _: _print_tune(t, result, fastest))


def _print_tune(t, result, fastest) -> None:
    for key, r in result.items():
        click.echo(f"{key:<24} {r['mean_ns'] / 1e3:10.1f} µs ± {r['sd_ns'] / 1e3:.1f}  tiles {r['tiles']}"
                   + ("  (emulated: correctness only)" if r.get("emulated") else "")
                   + ("  (static estimate, not measured)" if r.get("estimated") else ""))
    if fastest["method"]:
        per_token = ", ".join(f"{m} {ns / 1e3:.0f} µs" for m, ns in sorted(fastest["token_ns"].items(), key=lambda x: x[1]))
        note = "" if fastest["method"] == t.kernel.method else f" (profile {t.id} defaults to {t.kernel.method})"
        emulated = "; emulated: this ranks an emulator, not a board" if any(r.get("emulated") for r in result.values()) else ""
        click.echo(f"fastest method on {next(iter(result.values()))['where']}: {fastest['method']}{note} — "
                   f"ternary matmuls per token: {per_token}{emulated}")
