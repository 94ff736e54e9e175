"""Commands that build for a target: targets, doctor, build, kernels, tune."""

from __future__ import annotations


import click

from bitedge.cli._common import _connect, _hosts, _say, build_for, cli, json_option, ssh_options, targets_dir_option
from bitedge.errors import BitedgeError
from bitedge.output import print_json, progress


@cli.group(invoke_without_command=True)
@targets_dir_option
@json_option
@click.pass_context
def targets(ctx, targets_dirs, as_json):
    """List the board profiles (targets/*.toml); `targets show ID` prints one."""
    ctx.obj = {"targets_dirs": targets_dirs}
    if ctx.invoked_subcommand:
        return
    from bitedge.targets import load_targets

    found = load_targets(targets_dirs)
    if as_json:
        print_json([t.as_dict() for t in found.values()])
        return
    for t in found.values():
        mark = " (emulated)" if t.emulated else ""
        click.echo(f"{t.id:<18} {t.os}/{t.arch:<8} {','.join(t.isa):<34} {t.kernel.method:<5} {t.name}{mark}")


@targets.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def targets_show(obj, name, as_json):
    """Print one profile (by id or alias)."""
    from bitedge.targets import get_target

    t = get_target(name, obj["targets_dirs"])
    data = t.as_dict()
    data["path"] = str(t.path) if t.path else None
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key:>10}: {value}")


@cli.command()
@click.option("--cc", help="A compiler command to consider too (as $CC).")
@json_option
def doctor(cc, as_json):
    """Which toolchains can build which targets here, and what to install for the rest."""
    from bitedge.build.toolchains import doctor as doctor_rows

    rows = doctor_rows(cc=cc)
    if as_json:
        print_json([r.as_dict() for r in rows])
        return
    for r in rows:
        tool = f"{r.toolchain} {r.version}".strip() if r.toolchain else "NONE"
        runner = "" if r.runner is None else f"  runner {r.runner}: {'ok' if r.runner_ok else 'missing'}"
        fix = f"  → {r.fix}" if r.fix else ""
        click.echo(f"{r.target:<18} {tool:<34}{runner}{fix}")


@cli.command()
@click.argument("target", required=False)
@click.option("--target", "target_opt", help="Target profile id or alias (default: this machine).")
@click.option("--model", type=click.Path(dir_okay=False), help="Model the kernels are rendered for (its matrix shapes).")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), help="Output folder (default build/<target>).")
@click.option("--toolchain", help="Toolchain id (zig, gcc-cross, clang-cross, gcc, clang, cc).")
@click.option("--cc", help="A compiler command to use (a vendor cross gcc, say).")
@click.option("--clean", is_flag=True, help="Ignore cached builds.")
@targets_dir_option
@json_option
def build(target, target_opt, model, out_dir, toolchain, cc, clean, targets_dirs, as_json):
    """Cross-compile the runtime for a board: one static bitedge-run binary and a manifest."""
    t, result = build_for(target or target_opt, clean=clean, quiet=as_json, out_dir=out_dir, toolchain=toolchain, cc=cc,
                          targets_dirs=targets_dirs, model=model)
    info = {"target": t.id, "binary": str(result.binary), "manifest": str(result.manifest), "cached": result.cached,
            "toolchain": result.toolchain.id}
    if as_json:
        print_json(info)
    else:
        click.echo(f"{result.binary}  ({t.id}, {result.toolchain.id}{', cached' if result.cached else ''})")


@cli.command()
@click.option("--target", required=True, help="Target profile id or alias.")
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False), help="GGUF model (its matrix shapes).")
@click.option("--method", type=click.Choice(["i2_s", "tl1", "tl2"]), help="Kernel method (default: the profile's).")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default="build/kernels", show_default=True)
@click.option("--tuned/--no-tuned", default=True, show_default=True, help="Use tiles from the tuning cache when present.")
@targets_dir_option
@json_option
def kernels(target, model, method, out_dir, tuned, targets_dirs, as_json):
    """Render C kernels specialised to a board's ISA and a model's matrix shapes (jinja2 templates)."""
    from bitedge.targets import get_target
    from bitedge.render import model_shapes, render_kernels
    from bitedge.render.tune import tuned_tiles

    t = get_target(target, targets_dirs)
    method = method or t.kernel.method
    shapes = model_shapes(model)
    tiles = tuned_tiles(t, method, shapes) if tuned else None
    paths = render_kernels(t, shapes, method, tiles, out_dir)
    if as_json:
        print_json({"target": t.id, "method": method, "shapes": shapes, "tuned": bool(tiles), "files": [str(p) for p in paths]})
        return
    for p in paths:
        click.echo(str(p))
    _say(f"{t.id}: {method} kernels for {len(shapes)} shapes{' (tuned tiles)' if tiles else ''} in {out_dir}")


@cli.command()
@click.option("--target", help="Target profile (here: natively or under its runner; with --host: the board's, "
                                "default the inventory's).")
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False), help="GGUF model (its matrix shapes).")
@click.option("--method", "methods", multiple=True, type=click.Choice(["i2_s", "tl1", "tl2"]),
              help="Methods to tune (default: all three).")
@click.option("--host", help="Tune on this board over SSH (ssh_config alias, user@host[:port] or inventory name).")
@click.option("--estimate", is_flag=True, help="No board: pick tiles and method from llvm-mca static estimates "
              "(ARM boards; stored marked estimated, a measured result always wins).")
@click.option("--cache", type=click.Path(dir_okay=False), help="Tuning cache (default ~/.cache/bitedge/tuning.json).")
@click.option("--reps", type=int, default=20, show_default=True)
@click.option("--rounds", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Interleaved rounds over the candidates (the median counts).")
@targets_dir_option
@ssh_options
@json_option
def tune(target, model, methods, host, estimate, cache, reps, rounds, targets_dirs, as_json, **opts):
    """Measure candidate tiles per method and shape, here or on a board, and keep the winners in the tuning cache."""
    from bitedge.targets import get_target
    from bitedge.render import model_shape_counts
    from bitedge.build.tuner import fastest_method, planned_steps
    from bitedge.build.tuner import tune as tune_kernels

    if estimate and host:
        raise BitedgeError("--estimate models the kernels here without a board; leave out --host (or --estimate)")
    spec = _hosts([host], opts["inventory"])[0] if host else None
    target = (spec.target if spec else None) or target
    if not target:
        raise BitedgeError(f"{host}: which target profile? pass --target (bitedge probe {host} suggests one)" if host
                           else "pass --target (bitedge targets lists them)")
    t = get_target(target, targets_dirs)
    counts = model_shape_counts(model)
    methods = methods or ("i2_s", "tl1", "tl2")
    steps = planned_steps(methods, len(counts), rounds)

    def run_tune(timer=None):
        where = spec.name if spec else "here"
        with progress(f"tune {t.id} ({where})", steps, enabled=not as_json) as advance:
            return tune_kernels(t, counts, methods, cache_path=cache, reps=reps, rounds=rounds, timer=timer,
                                advance=advance)

    if estimate:
        from bitedge.render.estimate import estimate_tune

        result = estimate_tune(t, counts, methods, cache_path=cache, progress=None if as_json else _say)
    elif spec is None:
        result = run_tune()
    else:
        from bitedge.deploy.remote import BoardTimer

        with _connect(spec, opts) as conn:
            timer = BoardTimer(conn, spec, t)
            try:
                result = run_tune(timer)
            finally:
                timer.close()
    fastest = fastest_method(result, counts)
    if as_json:
        print_json({"target": t.id, "host": spec.name if spec else None, "profile_method": t.kernel.method,
                    "fastest": fastest, "results": result})
        return
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
