"""The bitedge command line: thin click commands over the library API (tests call the API directly)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

from bitedge import __version__
from bitedge.errors import BitedgeError
from bitedge.output import print_json, progress, write_text_atomic


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


@cli.command()
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="GGUF file to write.")
@click.option("--type", "packing", type=click.Choice(PACKINGS), default="i2_s", show_default=True,
              help="Packing of the ternary matrices (tq2_0: llama.cpp's type, for llama.cpp).")
@click.option("--embed-type", type=click.Choice(EMBED_TYPES), default="f16", show_default=True,
              help="Type of the embedding / output matrix.")
@click.option("--revision", help="Hub revision (branch, tag or commit) when SOURCE is a hub id.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--force-ternarize", is_flag=True,
              help="Ternarize a checkpoint that is not ternary (lossy: the model changes).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
def convert(source, output, packing, embed_type, revision, force, force_ternarize, no_progress, as_json):
    """Convert SOURCE (HF directory or hub id, .gguf, .onnx) into one bitedge GGUF file."""
    from bitedge.convert.gguf_writer import plan_tensors, write_gguf
    from bitedge.convert.sources import open_source

    src = open_source(source, revision=revision, ternary_check=not force_ternarize)
    total = sum(p.nbytes for p in plan_tensors(src.config.validate(), packing, embed_type))
    with _byte_progress(f"convert → {Path(output).name}", total, enabled=not (no_progress or as_json)) as advance:
        summary = write_gguf(src, output, packing=packing, embed_type=embed_type, force=force, progress=advance)
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote {output}: {summary.get('bytes', Path(output).stat().st_size) / 1e6:.1f} MB, "
                   f"packing {packing}, embeddings {embed_type}, {summary.get('seconds', 0):.1f} s")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def inspect(file, as_json):
    """Say what is inside any GGUF file (bitedge, llama.cpp, bitnet.cpp)."""
    from bitedge.inspect import format_inspect, inspect_file

    info = inspect_file(file)
    if as_json:
        print_json(info)
    else:
        click.echo(format_inspect(info))


@cli.command()
@click.option("--preset", required=True, help="Model size: test, 125M, 350M, 700M, 1.3B, 2.4B, 3.8B, 7B, 13B, 30B, 70B, 100B.")
@click.option("-o", "--output", required=True, type=click.Path(), help="GGUF file (or HF checkpoint folder with --hf).")
@click.option("--type", "packing", type=click.Choice(PACKINGS), default="i2_s", show_default=True)
@click.option("--embed-type", type=click.Choice(EMBED_TYPES), default="f16", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hf", "as_hf", is_flag=True, help="Write a Hugging Face checkpoint (bf16 master weights) instead.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option
def dummy(preset, output, packing, embed_type, seed, as_hf, force, no_progress, as_json):
    """Write a random ternary model at the sizes of the bitnet.cpp paper (streamed: little memory)."""
    from bitedge.convert.dummy import dummy_source, write_dummy_hf
    from bitedge.convert.gguf_writer import plan_tensors, write_gguf

    if as_hf:
        summary = write_dummy_hf(preset, output, seed=seed, force=force)
    else:
        src = dummy_source(preset, seed=seed)
        total = sum(p.nbytes for p in plan_tensors(src.config, packing, embed_type))
        with _byte_progress(f"dummy {preset} → {Path(output).name}", total, enabled=not (no_progress or as_json)) as advance:
            summary = write_gguf(src, output, packing=packing, embed_type=embed_type, force=force, progress=advance)
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote {output} ({preset})")


def ssh_options(f):
    """Options every command that talks to boards shares."""
    f = click.option("--inventory", type=click.Path(dir_okay=False), help="bitedge inventory (TOML) of boards.")(f)
    f = click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh_config file to read instead of ~/.ssh/config.")(f)
    f = click.option("--known-hosts", type=click.Path(dir_okay=False), help="known_hosts file (default ~/.ssh/known_hosts).")(f)
    f = click.option("--accept-new-host-key", is_flag=True, help="Trust and record a host key never seen before (never a changed one).")(f)
    f = click.option("--connect-timeout", type=float, default=15.0, show_default=True, help="Seconds to wait for a connection.")(f)
    return f


def _connect(spec, opts):
    from bitedge.deploy.ssh import connect

    return connect(spec, ssh_config=opts["ssh_config"], known_hosts=opts["known_hosts"],
                   accept_new_host_key=opts["accept_new_host_key"], connect_timeout=opts["connect_timeout"])


def _hosts(names, inventory):
    from bitedge.deploy.inventory import load_inventory, resolve_hosts

    return resolve_hosts(list(names), load_inventory(inventory) if inventory else None)


targets_dir_option = click.option("--targets-dir", "targets_dirs", multiple=True, type=click.Path(file_okay=False),
                                  help="Another folder of target profiles (*.toml).")


@cli.group(invoke_without_command=True)
@targets_dir_option
@json_option
@click.pass_context
def targets(ctx, targets_dirs, as_json):
    """List the board profiles (targets/*.toml); `targets show ID` prints one."""
    ctx.obj = {"targets_dirs": targets_dirs}
    if ctx.invoked_subcommand:
        return
    from bitedge.build.targets import load_targets

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
    from bitedge.build.targets import get_target

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


def _say(message: str) -> None:
    click.echo(message, err=True)


def build_for(target_name: str | None, *, clean: bool = False, quiet: bool = False, model=None, **kw):
    """(Target, BuildResult) for a target name, or for this machine when None; a tl1 / tl2 model gets a runtime
    with TL kernels rendered for its shapes (bitedge.build.with_kernels)."""
    from bitedge.build.targets import get_target, host_target_id
    from bitedge.build.with_kernels import build_runtime_for

    target = get_target(target_name or host_target_id(), kw.pop("targets_dirs", ()))
    return target, build_runtime_for(target, model, clean=clean, progress=None if quiet else _say, **kw)


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
    from bitedge.build.targets import get_target
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
    from bitedge.build.targets import get_target
    from bitedge.render import model_shape_counts
    from bitedge.render.tune import fastest_method, planned_steps
    from bitedge.render.tune import tune as tune_kernels

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
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-p", "--prompt", default="", help="Prompt text.")
@click.option("-n", "--n-tokens", "n", type=int, default=32, show_default=True, help="Tokens to generate.")
@click.option("--greedy/--sample", default=True, show_default=True, help="Greedy decoding or sampling.")
@click.option("--temp", type=float, default=0.8, show_default=True)
@click.option("--top-k", type=int, default=40, show_default=True)
@click.option("--top-p", type=float, default=0.95, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--ignore-eos", is_flag=True, help="Keep generating after the end-of-text token.")
@click.option("--engine", type=click.Choice(["native", "reference"]), default="native", show_default=True,
              help="native: the C runtime built for this machine; reference: the numpy oracle.")
@click.option("-t", "--threads", type=int, default=1, show_default=True)
@click.option("--target", help="Run a build for this target profile (emulated profiles run under their runner).")
@click.option("--host", help="Run on this board over SSH (deploys first; unchanged files are not sent again).")
@ssh_options
@json_option
def generate(model, prompt, n, greedy, temp, top_k, top_p, seed, ignore_eos, engine, threads, target, host, as_json, **opts):
    """Generate text from a GGUF model with the C runtime (here, emulated, or on a board) or the reference."""
    if n < 0:
        raise BitedgeError("--n-tokens must be >= 0")
    if engine == "reference":
        if host or target:
            raise BitedgeError("--engine reference runs here in numpy: it takes no --host or --target")
        result = _reference_generate(model, prompt, n, greedy, temp, seed, ignore_eos)
    elif host:
        from bitedge.deploy.remote import remote_generate

        spec = _hosts([host], opts["inventory"])[0]
        conn, _, dep, _ = _deploy_to(spec, target, model, opts, quiet=as_json)
        with conn:
            extra = (["--temp", "0"] if greedy else ["--temp", str(temp), "--top-k", str(top_k), "--top-p", str(top_p),
                                                     "--seed", str(seed)]) + (["--ignore-eos"] if ignore_eos else [])
            result = remote_generate(conn, dep, prompt=prompt, n=n, threads=threads, extra=extra)
    else:
        from bitedge.native import run_generate

        t, built = build_for(target, quiet=as_json, model=model)
        result = run_generate(built.binary, model, prompt=prompt, n=n, greedy=greedy, threads=threads,
                              runner=_local_runner(t), temp=temp, top_k=top_k, top_p=top_p, seed=seed,
                              ignore_eos=ignore_eos)
    for bulky in ("stderr", "logits_last"):
        result.pop(bulky, None)
    result["engine"] = engine
    if as_json:
        print_json(result)
    else:
        click.echo(prompt + result.get("text", ""))


def _reference_generate(model, prompt, n, greedy, temp, seed, ignore_eos) -> dict:
    from bitedge.gguf_read import read_model
    from bitedge.reference import Reference
    from bitedge.tokenizer import decode, encode

    src = read_model(model)
    if src.tokenizer is None:
        raise BitedgeError(f"{model}: carries no tokenizer (tokenizer.ggml.*): cannot encode a text prompt")
    prompt_tokens = encode(src.tokenizer, prompt)
    if not prompt_tokens:
        raise BitedgeError("empty prompt and the model adds no BOS token: give a prompt with -p")
    tokens, _ = Reference(src).generate(prompt_tokens, n, greedy=greedy, temperature=temp, seed=seed,
                                        stop_at_eos=not ignore_eos)
    tokens = [int(t) for t in tokens]
    return {"prompt_tokens": prompt_tokens, "tokens": tokens, "text": decode(src.tokenizer, tokens)}


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-p", "--n-prompt", type=int, default=128, show_default=True, help="Prompt tokens (pp test).")
@click.option("-n", "--n-gen", type=int, default=128, show_default=True, help="Generated tokens (tg test).")
@click.option("-t", "--threads", default="1", show_default=True, help="Thread counts, comma-separated.")
@click.option("-r", "--reps", type=int, default=5, show_default=True)
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

    names = list(hosts) + [h for h in (hosts_csv or "").split(",") if h.strip()]
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
        click.echo(summary_line(outcomes), err=True)
    if outcomes and not any(o.ok for o in outcomes):
        raise BitedgeError(summary_line(outcomes))


def _packing_of(model: str) -> str:
    from bitedge.gguf_read import read_metadata

    return str(read_metadata(model).get("kv", {}).get("bitedge.weight_packing", "unknown"))


@cli.command()
@click.option("--model", type=click.Path(exists=True), help="Use this checkpoint or GGUF instead of the bundled one.")
@click.option("--workdir", type=click.Path(file_okay=False), default="build/demo", show_default=True)
@click.option("-p", "--prompt", default="And God said", show_default=True)
@click.option("-n", "--n-tokens", type=int, default=40, show_default=True)
@json_option
def demo(model, workdir, prompt, n_tokens, as_json):
    """Convert, build (here and for an emulated Raspberry Pi 5), generate on both, compare, benchmark."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from bitedge.demo import run_demo

    console = Console(stderr=True)

    def step(desc):
        return console.status(desc + " …") if not as_json else _null()

    result = run_demo(model=model, workdir=workdir, prompt=prompt, n_tokens=n_tokens, step=step)
    if as_json:
        print_json(asdict(result))
        return
    out = Console()
    for desc, seconds in result.steps:
        out.print(f"[green]✓[/] {desc} [dim]({seconds:.1f} s)[/]")
    out.print(f"\n[bold]Prompt:[/] {result.prompt}")
    for label, run in result.runs.items():
        out.print(f"[bold]{label}:[/] {result.prompt}{run['text']}")
    verdict = "[green]identical token for token[/]" if result.identical else "[red]DIFFERENT[/]"
    out.print(f"\nGreedy tokens on all engines: {verdict}")
    table = Table(title="bitedge-run on this machine (1 thread)")
    for col in ("test", "tokens/s", "± sd"):
        table.add_column(col, justify="right")
    for row in result.bench:
        test = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        table.add_row(test, f"{row['avg_ts']:.1f}", f"{row['stddev_ts']:.1f}")
    out.print(table)
    out.print("[dim]The emulated Raspberry Pi 5 run checks correctness only: qemu timings say nothing about a real board.[/]")
    if not result.identical:
        raise BitedgeError("the engines disagree: this is a bug, please report it with the output above")


def _null():
    from contextlib import nullcontext

    return nullcontext()


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


def _suggest_targets(info: dict) -> list[str]:
    from bitedge.build.targets import suggest_targets

    return suggest_targets(info)


@cli.group()
def results():
    """The benchmark results database."""


@results.command("export")
@click.option("--db", type=click.Path(dir_okay=False), help="Results database (default ~/.local/share/bitedge/results.db).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file instead of stdout.")
def results_export(db, fmt, output):
    """Export every stored benchmark run as CSV or JSON."""
    from bitedge.results.store import DEFAULT_DB, ResultStore

    text = ResultStore(db or DEFAULT_DB).export(fmt)
    _write_text(output, text)


@cli.command()
@click.option("--db", type=click.Path(dir_okay=False), help="Results database (default ~/.local/share/bitedge/results.db).")
@click.option("--baseline", help="A board or kernel method to compute speedups against.")
@click.option("--board", "boards", multiple=True, help="Only these boards.")
@click.option("--model", "models", multiple=True, help="Only these models.")
@click.option("--all-runs", is_flag=True, help="Every run over time, not just the newest per board/model/method/threads/test.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Also write the table as CSV.")
@click.option("--plots", type=click.Path(file_okay=False), help="Write PNG plots into this folder.")
@json_option
def report(db, baseline, boards, models, all_runs, csv_out, plots, as_json):
    """Compare boards, models and kernel methods: markdown table, CSV and PNG plots."""
    from dataclasses import asdict

    from bitedge.results.report import csv_table, latest, markdown_table, plot, with_speedup
    from bitedge.results.store import DEFAULT_DB, ResultStore

    rows = ResultStore(db or DEFAULT_DB).rows()
    rows = [r for r in rows if (not boards or r.board in boards) and (not models or r.model in models)]
    if not rows:
        raise BitedgeError("no benchmark results stored yet (run bitedge bench first)")
    if not all_runs:
        rows = latest(rows)
    if csv_out:
        _write_text(csv_out, csv_table(rows, baseline))
    written = plot(rows, plots, baseline) if plots else []
    if as_json:
        print_json([{**asdict(r), "speedup": sp} for r, sp in with_speedup(rows, baseline)])
        return
    click.echo(markdown_table(rows, baseline), nl=False)
    for path in written:
        click.echo(f"plot: {path}", err=True)


def _write_text(path, text: str) -> None:
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path:
        write_text_atomic(path, text)
    else:
        click.echo(text, nl=False)


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
