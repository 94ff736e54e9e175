"""Commands on model files: convert, inspect, dummy, generate, demo."""

from __future__ import annotations

from pathlib import Path

import click

from bitedge.cli._common import (EMBED_TYPES, PACKINGS, _prompt_text, _say, cli, deprecated, host_option,
                                 model_argument, output_options, ssh_options, target_options)
from bitedge.errors import BitedgeError


@cli.command()
@click.argument("source")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="GGUF file to write.")
@click.option("--type", "packing", type=click.Choice(PACKINGS), default="i2_s", show_default=True,
              help="Packing of the ternary matrices (tq2_0: llama.cpp's type, for llama.cpp).")
@click.option("--embed-type", type=click.Choice(EMBED_TYPES), default="f16", show_default=True,
              help="Type of the embedding / output matrix (q6_k, q4_0: fewer bytes per generated token; the runtime "
                   "reads exactly the weights the reference reads).")
@click.option("--revision", help="Hub revision (branch, tag or commit) when SOURCE is a hub id.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--force-ternarize", is_flag=True,
              help="Ternarize a checkpoint that is not ternary (lossy: the model changes).")
@output_options(has_progress=True)
def convert(source, output, packing, embed_type, revision, force, force_ternarize, out):
    """Convert SOURCE (HF directory or hub id, .gguf, .onnx) into one bitedge GGUF file."""
    from bitedge.convert.gguf_writer import plan_tensors, write_gguf
    from bitedge.convert.sources import open_source

    src = open_source(source, revision=revision, ternary_check=not force_ternarize)
    total = sum(p.nbytes for p in plan_tensors(src.config.validate(), packing, embed_type))
    if src.tokenizer is None:
        _say(f"bitedge: warning: {source} has no tokenizer: bitedge-run will take token ids (--tokens), "
             f"not text prompts, from {output}")
    with out.bar(f"convert → {Path(output).name}", total, unit="bytes") as advance:
        summary = write_gguf(src, output, packing=packing, embed_type=embed_type, force=force, progress=advance)
    out.result(summary, lambda s: click.echo(
        f"wrote {output}: {s.get('bytes', Path(output).stat().st_size) / 1e6:.1f} MB, packing {packing}, "
        f"embeddings {embed_type}, {s.get('seconds', 0):.1f} s"))


@cli.command()
@model_argument()
@output_options()
def inspect(model, out):
    """Say what is inside MODEL, any GGUF file (bitedge, llama.cpp, bitnet.cpp)."""
    from bitedge.inspect import format_inspect, inspect_file

    out.result(inspect_file(model), lambda info: click.echo(format_inspect(info)))


@cli.command()
@click.option("--preset", required=True, help="Model size: test, 125M, 350M, 700M, 1.3B, 2.4B, 3.8B, 7B, 13B, 30B, 70B, 100B.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="GGUF file to write.")
@click.option("--hf-dir", type=click.Path(file_okay=False),
              help="Write a Hugging Face checkpoint (bf16 master weights) into this folder instead of a GGUF.")
@click.option("--hf", "old_hf", is_flag=True, hidden=True)
@click.option("--type", "packing", type=click.Choice(PACKINGS), default="i2_s", show_default=True)
@click.option("--embed-type", type=click.Choice(EMBED_TYPES), default="f16", show_default=True,
              help="Type of the embedding / output matrix.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
@output_options(has_progress=True)
def dummy(preset, output, hf_dir, old_hf, packing, embed_type, seed, force, out):
    """Write a random ternary model at the sizes of the bitnet.cpp paper (streamed: little memory)."""
    from bitedge.convert.dummy import dummy_source
    from bitedge.convert.hf_writer import write_dummy_hf
    from bitedge.convert.gguf_writer import plan_tensors, write_gguf

    if old_hf:
        deprecated("--hf -o FOLDER", "--hf-dir FOLDER")
        if hf_dir:
            raise BitedgeError(f"--hf -o {output} and --hf-dir {hf_dir}: give one folder")
        hf_dir, output = output, None
    if bool(output) == bool(hf_dir):
        raise BitedgeError("give one output: -o FILE.gguf or --hf-dir FOLDER" if not output else
                           f"-o {output} and --hf-dir {hf_dir}: give one output")
    if hf_dir:
        summary = write_dummy_hf(preset, hf_dir, seed=seed, force=force)
    else:
        src = dummy_source(preset, seed=seed)
        total = sum(p.nbytes for p in plan_tensors(src.config, packing, embed_type))
        with out.bar(f"dummy {preset} → {Path(output).name}", total, unit="bytes") as advance:
            summary = write_gguf(src, output, packing=packing, embed_type=embed_type, force=force, progress=advance)
    out.result(summary, lambda _: click.echo(f"wrote {output or hf_dir} ({preset})"))


@cli.command()
@model_argument()
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
@click.option("-t", "--threads", type=click.IntRange(1, 1024), default=1, show_default=True)
@target_options("Target profile (here: emulated profiles run under their runner; with --host: default the "
                "inventory's, else bitedge probe's suggestion).")
@host_option("Run on this board over SSH (deploys first; unchanged files are not sent again)")
@ssh_options
@output_options(has_progress=True)
def generate(model, prompt, n, greedy, temp, top_k, top_p, seed, ignore_eos, engine, threads, target, targets_dirs,
             host, ssh, out):
    """Generate text from MODEL with the C runtime (here, emulated, or on a board) or the numpy reference."""
    from bitedge import api

    if n < 0:
        raise BitedgeError("--n-tokens must be >= 0")
    prompt = _prompt_text(prompt)
    sampling = api.Sampling(greedy, temp, top_k, top_p, seed, ignore_eos)
    m = api.Model.read(model)
    if engine == "reference":
        if host or target:
            raise BitedgeError("--engine reference runs here in numpy: it takes no --host or --target")
        result = api.generate_reference(m, prompt, n, sampling)
    elif host:
        spec = api.boards([host], ssh)[0]
        with api.deploy(spec, ssh, m, target=target, targets_dirs=targets_dirs, say=out.say, note=_say) as board:
            result = api.generate_on(board, prompt, n, sampling, threads)
    else:
        result = api.generate_here(api.resolve_target(target, targets_dirs), m, prompt, n, sampling, threads, out.say)
    for bulky in ("stderr", "logits_last"):
        result.pop(bulky, None)
    result["engine"] = engine
    out.result(result, lambda r: click.echo(prompt + r.get("text", "")))


@cli.command()
@model_argument(required=False, dir_okay=True)
@click.option("--out-dir", type=click.Path(file_okay=False), default="build/demo", show_default=True,
              help="Folder for the converted model and the builds.")
@click.option("--workdir", "old_workdir", type=click.Path(file_okay=False), hidden=True)
@click.option("-p", "--prompt", default="And God said", show_default=True)
@click.option("-n", "--n-tokens", type=int, default=40, show_default=True)
@output_options(has_progress=True)
def demo(model, out_dir, old_workdir, prompt, n_tokens, out):
    """Convert, build (here and for an emulated Raspberry Pi 5), generate on both, compare, benchmark.

    MODEL: a checkpoint or GGUF to use instead of the bundled one."""
    from contextlib import nullcontext
    from dataclasses import asdict

    from rich.console import Console

    from bitedge.demo import run_demo

    if old_workdir:
        deprecated("--workdir", "--out-dir")
        out_dir = old_workdir
    console = Console(stderr=True)

    def step(desc):
        return console.status(desc + " …") if out.show_progress else nullcontext()

    result = run_demo(model=model, workdir=out_dir, prompt=prompt, n_tokens=n_tokens, step=step)
    out.result(asdict(result), lambda _: _print_demo(result))


def _print_demo(result) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    for desc, seconds in result.steps:
        out.print(f"[green]✓[/] {desc} [dim]({seconds:.1f} s)[/]")
    out.print(f"\n[bold]Prompt:[/] {result.prompt}")
    for label, run in result.runs.items():
        out.print(f"[bold]{label}:[/] {result.prompt}{run['text']}")
    verdict = ("identical token for token" if result.identical else
               "they part where an int8 code sits on a rounding boundary, which the exact check below accepts")
    out.print(f"\nGreedy tokens on all engines: {verdict}")
    for label, summary in result.lossless.items():
        out.print(f"[green]lossless[/] {label}: {summary}")
    table = Table(title="bitedge-run on this machine (1 thread)")
    for col in ("test", "tokens/s", "± sd"):
        table.add_column(col, justify="right")
    for row in result.bench:
        test = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        table.add_row(test, f"{row['avg_ts']:.1f}", f"{row['stddev_ts']:.1f}")
    out.print(table)
    out.print("[dim]The emulated Raspberry Pi 5 run checks correctness only: qemu timings say nothing about a real board.[/]")
