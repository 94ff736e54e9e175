"""bitedge as a library: what the commands do, callable from programs and tests.

Layer: above build, deploy and results, below the CLI (bitedge/cli/*_commands.py are thin click wrappers over this
module). Every function takes a resolved Target and a Model read once (Model.read validates the file and keeps
what the commands need from it: packing, matrix shapes, the source model's identity). Boards are HostSpec values
(bitedge.deploy.inventory.resolve_hosts) reached with one SshOptions.
"""

from __future__ import annotations

import functools
import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bitedge.errors import BitedgeError
from bitedge.output import progress as progress_bar

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class Model:
    """A bitedge GGUF file, read (and validated) once."""

    path: Path
    source: object  # bitedge.model.ModelSource (tensors load lazily)

    @classmethod
    def read(cls, path: str | Path) -> "Model":
        from bitedge.gguf_read import read_model

        return cls(Path(path), read_model(str(path)))

    @property
    def packing(self) -> str:
        return str(self.source.metadata.get("bitedge.weight_packing", "unknown"))

    @property
    def shapes(self) -> list[tuple[int, int]]:
        from bitedge.render import model_shapes

        return model_shapes(self.source)

    @property
    def shape_counts(self) -> dict[tuple[int, int], int]:
        from bitedge.render import model_shape_counts

        return model_shape_counts(self.source)

    @functools.cached_property
    def sha256(self) -> str:
        from bitedge.model import sha256_file

        return sha256_file(self.path)

    @property
    def source_sha256(self) -> str:
        """The source model's identity, the same for every packing converted from it (what `report --baseline
        METHOD` pairs rows by): the weights' sha256 the converter recorded; else this file's own sha256."""
        return str(self.source.source_sha256 or self.sha256)


def resolve_target(name: str | None = None, targets_dirs=()):
    """A target profile by id or alias; None: this machine's."""
    from bitedge.board import host_target_id
    from bitedge.targets import get_target

    return get_target(name or host_target_id(), targets_dirs)


def run_dir(target, model: Model | None = None) -> Path:
    """Where generate / bench / deploy / serve / tune build: a folder in the build cache (never ./build), one per
    target and set of model shapes so that two models render their kernels side by side."""
    from bitedge.builder.cache import default_cache_dir

    tag = hashlib.sha256(repr(model.shapes if model else []).encode()).hexdigest()[:12]
    return default_cache_dir() / "work" / f"{target.id}-{tag}"


def build(target, model: Model | None = None, *, out_dir: str | Path | None = None, say: Say = _quiet, **kw):
    """bitedge-run for target (TL kernels specialised to model's shapes); out_dir None: the cache's run_dir."""
    from bitedge.builder.compile import build_runtime

    out = out_dir if out_dir is not None else run_dir(target, model)
    return build_runtime(target, shapes=model.shapes if model else (), out_dir=out, progress=say, **kw)


def local_runner(target) -> list[str] | None:
    return list(target.runner) if target.emulated else None


# ---- boards --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshOptions:
    inventory: str | None = None
    ssh_config: str | None = None
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: float = 15.0
    stall_timeout: float = 60.0


def boards(names: list[str], ssh: SshOptions):
    """HostSpecs for board names (inventory names, ssh_config aliases, user@host:port)."""
    from bitedge.deploy.inventory import load_inventory, resolve_hosts

    return resolve_hosts(list(names), load_inventory(ssh.inventory) if ssh.inventory else None)


def connect(spec, ssh: SshOptions):
    from bitedge.deploy.ssh import connect as ssh_connect

    return ssh_connect(spec, ssh_config=ssh.ssh_config, known_hosts=ssh.known_hosts,
                       accept_new_host_key=ssh.accept_new_host_key, connect_timeout=ssh.connect_timeout,
                       stall_timeout=ssh.stall_timeout)


def probe(conn, targets_dirs=()) -> dict:
    """The board's OS, architecture, CPU and features, plus the profiles that fit it (best first; shipped ones and
    those in targets_dirs)."""
    from bitedge.deploy.probe import probe as probe_board
    from bitedge.targets import suggest_targets

    info = probe_board(conn).as_dict()
    info["suggested_targets"] = suggest_targets(info, targets_dirs)
    return info


def board_target(spec, conn, target: str | None, targets_dirs=(), say: Say = _quiet):
    """The board's Target: an explicit --target wins (a different inventory target is named on stderr), then the
    inventory's, then the best profile bitedge probe suggests."""
    if target and spec.target and target != spec.target:
        say(f"{spec.name}: using --target {target} (the inventory says {spec.target})")
    name = target or spec.target
    if not name:
        suggested = probe(conn, targets_dirs)["suggested_targets"]
        if not suggested:
            raise BitedgeError(f"{spec.name}: no shipped target profile fits this board: pass --target or add a "
                               f"profile (docs/targets.md)")
        name = suggested[0]
        say(f"{spec.name}: using target {name} (from bitedge probe)")
    return resolve_target(name, targets_dirs)


@dataclass
class OnBoard:
    """A board reached and deployed to: close() (or `with`) ends the connection."""

    conn: object
    target: object
    deployment: object
    build: object

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "OnBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def deploy(spec, ssh: SshOptions, model: Model | None = None, *, target: str | None = None, targets_dirs=(),
           say: Say = _quiet, note: Say = _quiet, show_progress: bool = False) -> OnBoard:
    """Connect, resolve the board's target (board_target: which one it took goes to note), build for it (cached;
    build lines to say), upload runtime and model (sha256-checked, resumable, unchanged files skipped) and check
    they run."""
    from bitedge.deploy.remote import deploy as deploy_files

    conn = connect(spec, ssh)
    try:
        t = board_target(spec, conn, target, targets_dirs, note)
        result = build(t, model, say=say)
        size = result.binary.stat().st_size + (model.path.stat().st_size if model else 0)
        with progress_bar(f"upload → {spec.name}", size, unit="bytes", enabled=show_progress) as advance:
            dep = deploy_files(conn, spec, result.binary, model.path if model else None, runner=local_runner(t),
                               progress=advance)
    except BaseException:
        conn.close()
        raise
    return OnBoard(conn, t, dep, result)


# ---- generate --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    greedy: bool = True
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 42
    ignore_eos: bool = False

    def runtime_args(self) -> list[str]:
        args = ["--temp", "0"] if self.greedy else ["--temp", str(self.temp), "--top-k", str(self.top_k),
                                                     "--top-p", str(self.top_p), "--seed", str(self.seed)]
        return args + (["--ignore-eos"] if self.ignore_eos else [])


def generate_here(target, model: Model, prompt: str, n: int, sampling: Sampling = Sampling(), threads: int = 1,
                  say: Say = _quiet) -> dict:
    """bitedge-run generate on this machine (an emulated target under its runner)."""
    from bitedge.native import run_generate

    built = build(target, model, say=say)
    s = sampling
    return run_generate(built.binary, model.path, prompt=prompt, n=n, greedy=s.greedy, threads=threads,
                        runner=local_runner(target), temp=s.temp, top_k=s.top_k, top_p=s.top_p, seed=s.seed,
                        ignore_eos=s.ignore_eos)


def generate_on(board: OnBoard, prompt: str, n: int, sampling: Sampling = Sampling(), threads: int = 1) -> dict:
    from bitedge.deploy.remote import remote_generate

    return remote_generate(board.conn, board.deployment, prompt=prompt, n=n, threads=threads,
                           extra=sampling.runtime_args())


def generate_reference(model: Model, prompt: str, n: int, sampling: Sampling = Sampling()) -> dict:
    """The numpy reference engine (the oracle), with the runtime's context limit."""
    from bitedge.reference import Reference
    from bitedge.tokenizer import decode, encode

    src = model.source
    if src.tokenizer is None:
        raise BitedgeError(f"{model.path}: carries no tokenizer (tokenizer.ggml.*): cannot encode a text prompt")
    prompt_tokens = encode(src.tokenizer, prompt)
    if not prompt_tokens:
        raise BitedgeError("empty prompt and the model adds no BOS token: give a prompt with -p")
    ctx = src.config.context_length
    if len(prompt_tokens) + n > ctx:  # as bitedge-run says it
        raise BitedgeError(f"prompt ({len(prompt_tokens)} tokens) + {n} new tokens exceed the context of {ctx} positions")
    tokens, _ = Reference(src).generate(prompt_tokens, n, greedy=sampling.greedy, temperature=sampling.temp,
                                        seed=sampling.seed, stop_at_eos=not sampling.ignore_eos)
    tokens = [int(t) for t in tokens]
    return {"prompt_tokens": prompt_tokens, "tokens": tokens, "text": decode(src.tokenizer, tokens)}


# ---- bench -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPlan:
    n_prompt: int = 128
    n_gen: int = 128
    threads: str = "1"  # comma-separated thread counts
    reps: int = 5
    method: str | None = None  # label stored with the rows (default: the model's packing)


def _row_context(model: Model, plan: BenchPlan) -> dict:
    return dict(model=model.path.name, model_sha256=model.sha256, source_sha256=model.source_sha256,
                method=plan.method or model.packing)


def bench_here(target, model: Model, plan: BenchPlan, say: Say = _quiet) -> list:
    """bitedge-run bench on this machine: BenchRows (not stored)."""
    from bitedge.native import run_bench
    from bitedge.results.store import rows_from_bench

    built = build(target, model, say=say)
    out = run_bench(built.binary, model.path, plan.n_prompt, plan.n_gen, [int(x) for x in plan.threads.split(",")],
                    plan.reps, runner=local_runner(target))
    return rows_from_bench(out, board=socket.gethostname(), target=target.id, toolchain=built.toolchain.id,
                           **_row_context(model, plan))


def bench_fleet(specs, ssh: SshOptions, model: Model, plan: BenchPlan, *, target: str | None = None,
                targets_dirs=(), note: Say = _quiet) -> list:
    """Deploy and bench on every board in parallel: HostOutcomes (a board that fails fails alone), each ok one
    holding its BenchRows (not stored)."""
    from bitedge.deploy.fleet import run_fleet
    from bitedge.deploy.remote import remote_bench
    from bitedge.results.store import rows_from_bench

    context = _row_context(model, plan)

    def job(spec):
        with deploy(spec, ssh, model, target=target, targets_dirs=targets_dirs, note=note) as board:
            out = remote_bench(board.conn, board.deployment, n_prompt=plan.n_prompt, n_gen=plan.n_gen,
                               threads=plan.threads, reps=plan.reps)
        return rows_from_bench(out, board=spec.name, target=board.target.id, toolchain=board.build.toolchain.id,
                               cpu=board.deployment.board.cpu, **context)

    return run_fleet(specs, job)


# ---- tune ------------------------------------------------------------------------------------------------------------


def tune(target, model: Model, methods, *, spec=None, conn=None, cache=None,
         reps: int = 20, rounds: int = 3, show_progress: bool = False) -> dict:
    """Time every candidate tile per method and shape, here or (spec + an open conn) on a board; the winners go
    to the tuning cache. Returns bitedge.builder.tuner.tune's results."""
    from bitedge.builder.tuner import planned_steps
    from bitedge.builder.tuner import tune as tune_kernels

    counts = model.shape_counts
    steps = planned_steps(methods, len(counts), rounds)
    timer = None
    if spec is not None:
        from bitedge.deploy.remote import BoardTimer

        timer = BoardTimer(conn, spec, target)
    try:
        with progress_bar(f"tune {target.id} ({spec.name if spec else 'here'})", steps,
                          enabled=show_progress) as advance:
            return tune_kernels(target, counts, methods, cache_path=cache, reps=reps, rounds=rounds, timer=timer,
                                advance=advance)
    finally:
        if timer is not None:
            timer.close()
