"""Commands on model files: convert, inspect, dummy, generate, demo."""

from __future__ import annotations

from pathlib import Path

import click

from bitedge.cli._common import (EMBED_TYPES, PACKINGS, _byte_progress, _deploy_to, _hosts, _local_runner, _null,
                                 _prompt_text, _say, build_for, cli, json_option, ssh_options)
from bitedge.errors import BitedgeError
from bitedge.output import print_json


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
    if src.tokenizer is None:
        _say(f"bitedge: warning: {source} has no tokenizer: bitedge-run will take token ids (--tokens), "
             f"not text prompts, from {output}")
    with _byte_progress(f"convert → {Path(output).name}", total, enabled=not (no_progress or as_json)) as advance:
        summary = write_gguf(src, output, packing=packing, embed_type=embed_type, force=force, progress=advance)
    if as_json:
        print_json(summary)
    else:
        click.echo(f"wrote {output}: {summary.get('bytes', Path(output).stat().st_size) / 1e6:.1f} MB, "
                   f"packing {packing}, embeddings {embed_type}, {summary.get('seconds', 0):.1f} s")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
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


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
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
    prompt = _prompt_text(prompt)
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
    ctx = src.config.context_length
    if len(prompt_tokens) + n > ctx:  # as bitedge-run says it
        raise BitedgeError(f"prompt ({len(prompt_tokens)} tokens) + {n} new tokens exceed the context of {ctx} positions")
    tokens, _ = Reference(src).generate(prompt_tokens, n, greedy=greedy, temperature=temp, seed=seed,
                                        stop_at_eos=not ignore_eos)
    tokens = [int(t) for t in tokens]
    return {"prompt_tokens": prompt_tokens, "tokens": tokens, "text": decode(src.tokenizer, tokens)}


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
