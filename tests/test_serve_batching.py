"""Continuous batching (issue #15): the decode steps of several sequences as one forward pass.

- be_forward_seqs in C (kernels/tests/forward_seqs_main.c, built from the runtime's sources): for 1..8 sequences at
  different positions, in batches of changing membership, every sequence's logits and KV cache are bit-identical
  (memcmp) to running it alone; I2_S, TL1 and TL2, the best kernel table and the scalar one, 1 and 2 threads; also
  under ASan + UBSan, and a deliberately broken runtime (forward_impl.h) must fail the check.
- bitedge-run serve with --decode-batch: concurrent openai clients, started staggered so their slots sit at
  different positions, each get exactly their greedy answer alone (= `bitedge-run generate`), while /health shows
  that batches of more than one sequence ran; --decode-batch 1 runs none; the ThreadSanitizer build stays quiet.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from _c_build import CToolMissing, compile_c, run_binary
from _runtime_helpers import RUNTIME, build_runtime, runtime_c_sources, session_runtime
from conftest import make_tiny_model
from _serve_helpers import Server, write_kjv
from bitedge.convert.gguf_writer import write_gguf
from bitedge.model import ModelConfig

openai = pytest.importorskip("openai")
from bitedge.native import run_generate  # noqa: E402

DRIVER = RUNTIME.parent / "tests" / "forward_seqs_main.c"


def is_command_line(path) -> bool:
    """bitedge-run's command-line front end (main.c and its per-command main_*.c): the driver has its own main()."""
    return path.name == "main.c" or path.name.startswith("main_")


# odd shapes (K not a multiple of 3 nor 128, N not of 32), GQA 5:1, a vocabulary to make the output matrix several
# row blocks; context 64 covers the driver's positions
CONFIG = ModelConfig(vocab_size=1301, hidden_size=160, intermediate_size=200, num_layers=2, num_heads=5,
                     num_kv_heads=1, head_dim=22, context_length=64, tie_embeddings=False, ffn_act="relu2",
                     sub_norms=True, name="seqs-odd")
EMBED = {"i2_s": "q8_0", "tl1": "f16", "tl2": "f32"}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    out = tmp_path_factory.mktemp("seqs")
    sources = [p for p in runtime_c_sources(out / "kernels") if not is_command_line(p)] + [DRIVER]
    try:
        return compile_c(sources, out / "forward_seqs_main", flags=("-ffp-contract=off", "-pthread"), opt="-O2",
                         include_dirs=(RUNTIME, out / "kernels"))
    except CToolMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def seq_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq-models")
    source = make_tiny_model(CONFIG, 15, draw="scaled", tokenizer=None)
    paths = {}
    for packing, embed in EMBED.items():
        paths[packing] = d / f"seqs-{packing}.gguf"
        write_gguf(source, paths[packing], packing=packing, embed_type=embed)
    return paths


def best_table() -> str:
    from _c_build import host_has_avx2, host_has_avx512_vnni, host_has_avx_vnni

    if host_has_avx512_vnni():
        return "avx512-vnni"
    return "avx-vnni" if host_has_avx_vnni() else "avx2" if host_has_avx2() else "scalar"


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kernels", ["best", "scalar"])
@pytest.mark.parametrize("packing", list(EMBED))
def test_batched_steps_equal_each_sequence_alone(driver, seq_models, packing, kernels, threads):
    table = best_table() if kernels == "best" else "scalar"
    proc = run_binary(driver, [str(seq_models[packing]), table, str(threads)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 1 + 2 + ... : every sequence of every count compared at every step it took part in
    assert proc.stdout.startswith("ok: ") and int(proc.stdout.split()[1]) > 150, proc.stdout


def test_batched_steps_under_address_sanitizer(tmp_path, seq_models):
    # every buffer of a batch (activations of n sequences, each cache, logits copied out) within bounds: ASan + UBSan
    sources = [p for p in runtime_c_sources(tmp_path / "kernels") if not is_command_line(p)] + [DRIVER]
    exe = compile_c(sources, tmp_path / "forward_seqs_asan", flags=("-ffp-contract=off", "-pthread"), sanitize=True,
                    include_dirs=(RUNTIME, tmp_path / "kernels"))
    for packing in ("i2_s", "tl2"):
        proc = run_binary(exe, [str(seq_models[packing]), "scalar", "2"], timeout=600)
        assert proc.returncode == 0 and proc.stdout.startswith("ok: "), proc.stdout + proc.stderr[-3000:]


def test_driver_catches_a_difference(tmp_path, seq_models):
    # the check can fail: a runtime whose batched steps all read and extend the first sequence's cache
    patched = tmp_path / "runtime"
    patched.mkdir()
    for p in RUNTIME.glob("*.[ch]"):
        (patched / p.name).write_text(p.read_text())
    src = (patched / "forward_impl.h").read_text()
    wrong = src.replace("p->positions ? p->seqs[b] : p->state", "p->positions ? p->seqs[b & 0] : p->state")
    assert wrong != src
    (patched / "forward_impl.h").write_text(wrong)
    sources = [p for p in runtime_c_sources(tmp_path / "kernels", runtime_dir=patched) if not is_command_line(p)]
    exe = compile_c([*sources, DRIVER], tmp_path / "broken", flags=("-ffp-contract=off", "-pthread"), opt="-O1",
                    include_dirs=(patched, tmp_path / "kernels"))
    proc = run_binary(exe, [str(seq_models["i2_s"]), "scalar", "1"], timeout=300)
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout, proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------------------------
# the server

PROMPTS = ["In the beginning", "And the LORD said unto Moses", "abc", "Blessed are the meek", "And it came to pass",
           "The kingdom of heaven is like", "0123456789", "Thou shalt"]
N_TOKENS = 100


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_kjv(tmp_path_factory.mktemp("serve-batching") / "kjv.gguf")


@pytest.fixture(scope="module")
def alone(binary, model):
    """prompt -> the greedy text of `bitedge-run generate` (one sequence, no server)"""
    return {p: run_generate(binary, model, prompt=p, n=N_TOKENS, ignore_eos=True)["text"] for p in PROMPTS}


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=300)


def staggered(server, prompts, after: int = 4) -> list[str]:
    """Each prompt from its own thread and openai client, streamed; the next one starts once the previous has
    received `after` chunks, so the slots sit at different positions when their steps are batched."""
    texts: list[str | None] = [None] * len(prompts)
    errors: list[BaseException] = []
    started = [threading.Event() for _ in prompts]
    clients = [client(server) for _ in prompts]

    def run(i):
        try:
            chunks = clients[i].completions.create(model="x", prompt=prompts[i], max_tokens=N_TOKENS,
                                                   temperature=0, stream=True, extra_body={"ignore_eos": True})
            parts = []
            for ch in chunks:
                parts.append(ch.choices[0].text if ch.choices else "")
                if len(parts) >= after:
                    started[i].set()
            texts[i] = "".join(parts)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            started[i].set()

    threads = []
    for i in range(len(prompts)):
        t = threading.Thread(target=run, args=(i,))
        t.start()
        threads.append(t)
        started[i].wait(60)
    for t in threads:
        t.join(300)
    assert not errors, errors
    return texts


def test_concurrent_clients_get_their_answers_alone_in_batches(binary, model, alone):
    with Server(binary, model, "--slots", "4", "--queue", "8") as server:
        texts = staggered(server, PROMPTS)
        h = server.health()
    assert texts == [alone[p] for p in PROMPTS]
    assert h["decode_batch"] == 4 and h["completed"] == len(PROMPTS)
    assert h["largest_batch"] > 1, h  # several slots really shared steps
    assert h["tokens_decoded"] == len(PROMPTS) * (N_TOKENS - 1)  # the last token is sampled, never fed
    assert h["decode_steps"] < h["tokens_decoded"]


def test_decode_batch_one_takes_turns(binary, model, alone):
    with Server(binary, model, "--slots", "3", "--decode-batch", "1") as server:
        texts = staggered(server, PROMPTS[:3])
        h = server.health()
    assert texts == [alone[p] for p in PROMPTS[:3]]
    assert h["decode_batch"] == 1 and h["largest_batch"] == 1 and h["decode_steps"] == h["tokens_decoded"]


def test_decode_batch_is_checked(binary, model):
    proc = subprocess.run([str(binary), "serve", "-m", str(model), "--decode-batch", "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--decode-batch" in proc.stderr, proc.stderr


def test_batching_under_thread_sanitizer(tmp_path, model, alone):
    # batched steps, gathering, a client leaving mid-stream and the queue: ThreadSanitizer must stay quiet
    from concurrent.futures import ThreadPoolExecutor

    from _serve_helpers import start_stream

    try:
        exe = build_runtime(tmp_path / "bitedge-run-tsan", extra=("-fsanitize=thread", "-g"), opt="-O1")
    except CToolMissing as e:
        pytest.skip(str(e))
    with Server(exe, model, "--slots", "3", "--queue", "8", "-t", "2") as server:
        leaving = start_stream(server, {"prompt": "abc", "max_tokens": 200, "ignore_eos": True})

        def ask(i):
            c = client(server)
            got = c.completions.create(model="x", prompt=PROMPTS[i], max_tokens=N_TOKENS, temperature=0,
                                       extra_body={"ignore_eos": True})
            return got.choices[0].text

        with ThreadPoolExecutor(5) as pool:
            texts = list(pool.map(ask, range(5)))
            leaving.close()
        assert texts == [alone[p] for p in PROMPTS[:5]]
        h = server.wait_health(lambda h: h["slots_idle"] == 3)
        assert h["completed"] + h["cancelled"] == 6 and h["largest_batch"] > 1, h
    assert "ThreadSanitizer" not in server.stderr, server.stderr[-3000:]
