"""bitedge-run serve against real clients on 127.0.0.1: the official openai package (chat and completions,
streaming and not, usage), answers equal to `bitedge-run generate` on the same prompt (greedy and seeded),
stop sequences, 8 concurrent clients on 4 slots, a client that disconnects mid-stream, and a full queue."""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from _runtime_helpers import session_runtime
from _serve_helpers import Server, sse_events, start_stream, write_dummy, write_kjv

openai = pytest.importorskip("openai")
from bitedge.native import run_generate  # noqa: E402

PROMPTS = ["In the beginning", "And the LORD said", "abc", "Ünïcödé 数字", "Blessed are", "0123456789",
           "And it came to pass", "The kingdom of heaven"]


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return session_runtime(tmp_path_factory)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_kjv(tmp_path_factory.mktemp("serve") / "kjv.gguf")


@pytest.fixture(scope="module")
def server(binary, model):
    with Server(binary, model, "--slots", "4") as s:
        yield s


def client(server, **kw):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, timeout=120, **kw)


def generate(binary, model, prompt, n, **kw):
    return run_generate(binary, model, prompt=prompt, n=n, ignore_eos=False, **kw)


def test_health_models_and_page(server):
    h = server.health()
    assert h["status"] == "ok" and h["slots_idle"] + h["slots_busy"] == 4
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["kjv.gguf"]
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    assert "<html" in page and "/v1/chat/completions" in page
    assert "http://" not in page and "https://" not in page  # self-contained: nothing loaded from elsewhere
    assert "default-src 'self'" in headers["content-security-policy"]


@pytest.mark.parametrize("prompt", PROMPTS[:3])
def test_completion_greedy_equals_generate(server, binary, model, prompt):
    want = generate(binary, model, prompt, 12)
    got = client(server).completions.create(model="kjv.gguf", prompt=prompt, max_tokens=12, temperature=0)
    assert got.choices[0].text == want["text"]
    assert got.usage.prompt_tokens == len(want["prompt_tokens"])
    assert got.usage.completion_tokens == len(want["tokens"])
    assert got.usage.total_tokens == got.usage.prompt_tokens + got.usage.completion_tokens
    assert got.choices[0].finish_reason == ("length" if len(want["tokens"]) == 12 else "stop")


def test_chat_greedy_equals_generate_chat(server, binary, model):
    want = generate(binary, model, "Who made the heaven?", 10, chat=True)
    got = client(server).chat.completions.create(model="x", messages=[{"role": "user", "content": "Who made the heaven?"}],
                                                  max_tokens=10, temperature=0)
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == want["text"]
    assert got.usage.prompt_tokens == len(want["prompt_tokens"])
    assert got.usage.completion_tokens == len(want["tokens"])


def test_completion_by_token_ids(server, binary, model):
    want = run_generate(binary, model, tokens=[5, 17, 99, 200], n=6, ignore_eos=False)
    got = client(server).completions.create(model="x", prompt=[5, 17, 99, 200], max_tokens=6, temperature=0)
    assert got.choices[0].text == want["text"] and got.usage.prompt_tokens == 4


def test_seeded_sampling_equals_generate(server, binary, model):
    want = generate(binary, model, "And the LORD said", 16, greedy=False, temp=0.9, top_k=30, top_p=0.9, seed=7)
    c = client(server)
    texts = [c.completions.create(model="x", prompt="And the LORD said", max_tokens=16, temperature=0.9, top_p=0.9,
                                  seed=7, extra_body={"top_k": 30}).choices[0].text for _ in range(2)]
    assert texts == [want["text"]] * 2
    other = c.completions.create(model="x", prompt="And the LORD said", max_tokens=16, temperature=0.9, seed=8)
    assert other.usage.completion_tokens >= 1


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_equals_the_whole_answer(server, chat):
    c = client(server)
    kw = dict(model="x", max_tokens=20, temperature=0.7, seed=3)
    if chat:
        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me of Moses"}]
        whole = c.chat.completions.create(messages=msgs, **kw)
        chunks = list(c.chat.completions.create(messages=msgs, stream=True, stream_options={"include_usage": True},
                                                **kw))
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert text == whole.choices[0].message.content
    else:
        whole = c.completions.create(prompt="Tell me of Moses", **kw)
        chunks = list(c.completions.create(prompt="Tell me of Moses", stream=True,
                                           stream_options={"include_usage": True}, **kw))
        text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
        assert text == whole.choices[0].text
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert len({ch.id for ch in chunks}) == 1


def test_stream_ends_with_done(server):
    status, headers, body = server.request("POST", "/v1/completions",
                                           {"prompt": "abc", "max_tokens": 5, "stream": True, "temperature": 0})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = sse_events(body)
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert all("usage" not in e for e in events)  # only with stream_options.include_usage


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_cuts_the_text(server, stream):
    c = client(server)
    full = c.completions.create(model="x", prompt="In the beginning", max_tokens=40, temperature=0,
                                extra_body={"ignore_eos": True}).choices[0].text
    printable = [i for i in range(3, len(full) - 3) if full[i:i + 2].isprintable() and "\ufffd" not in full[i:i + 2]]
    if not printable:
        pytest.skip(f"the greedy text has no printable pair to stop at: {full!r}")
    stop = full[printable[0]:printable[0] + 2]
    want = full[:full.index(stop)]
    kw = dict(model="x", prompt="In the beginning", max_tokens=40, temperature=0, stop=[stop, "\x01never"],
              extra_body={"ignore_eos": True})
    if stream:
        chunks = list(c.completions.create(stream=True, **kw))
        text, finish = "".join(ch.choices[0].text for ch in chunks), chunks[-1].choices[0].finish_reason
    else:
        got = c.completions.create(**kw)
        text, finish = got.choices[0].text, got.choices[0].finish_reason
    assert (text, finish) == (want, "stop")


def test_eight_clients_on_four_slots_each_get_their_own_answer(server):
    c = client(server)

    def ask(i):
        prompt = PROMPTS[i]
        if i % 2:
            r = c.chat.completions.create(model="x", messages=[{"role": "user", "content": prompt}], max_tokens=24,
                                          temperature=0.8, seed=i, extra_body={"ignore_eos": True})
            return r.choices[0].message.content, r.usage.completion_tokens
        r = c.completions.create(model="x", prompt=prompt, max_tokens=24, temperature=0, extra_body={"ignore_eos": True})
        return r.choices[0].text, r.usage.completion_tokens

    alone = [ask(i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, range(8)))
    assert together == alone
    assert all(n == 24 for _, n in alone)
    assert len({t for t, _ in alone}) == 8  # the answers differ, so a mix-up between slots would show
    h = server.health()
    assert h["slots_busy"] == 0 and h["queued"] == 0


# ----------------------------------------------------------------------------------------------------------
# slots: disconnects and the queue (a model with a long context keeps a slot busy for a while)


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    return write_dummy(tmp_path_factory.mktemp("serve-long") / "long.gguf", context_length=8192)


LONG = {"prompt": "Once upon a time", "max_tokens": 8000, "temperature": 0, "ignore_eos": True}


def test_disconnect_mid_stream_frees_the_slot(binary, long_model):
    with Server(binary, long_model, "--slots", "1") as server:
        s = start_stream(server, LONG)
        assert server.health()["slots_busy"] == 1
        s.close()
        h = server.wait_health(lambda h: h["slots_idle"] == 1)
        assert (h["cancelled"], h["completed"]) == (1, 0)
        assert "client gone" in server.stderr
        got = client(server).completions.create(model="x", prompt="abc", max_tokens=3, temperature=0)
        assert got.usage.completion_tokens >= 1
        assert server.health()["completed"] == 1


def test_queue_full_answers_503_and_queued_requests_run(binary, long_model):
    with Server(binary, long_model, "--slots", "1", "--queue", "1") as server:
        first = start_stream(server, LONG)
        c = client(server)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            queued = pool.submit(c.completions.create, model="x", prompt="abc", max_tokens=3, temperature=0)
            server.wait_health(lambda h: h["queued"] == 1)
            with pytest.raises(openai.APIStatusError) as e:
                c.completions.create(model="x", prompt="abc", max_tokens=3)
            assert e.value.status_code == 503
            assert e.value.body["message"].startswith("server busy")
            assert server.health()["rejected"] == 1
            first.close()  # frees the slot: the queued request runs
            assert queued.result(timeout=120).usage.completion_tokens >= 1
        h = server.wait_health(lambda h: h["slots_idle"] == 1)
        assert (h["cancelled"], h["completed"]) == (1, 1)


def test_waiting_client_that_leaves_is_dropped_from_the_queue(binary, long_model):
    with Server(binary, long_model, "--slots", "1", "--queue", "1") as server:
        first = start_stream(server, LONG)
        second = server.connect()
        data = json.dumps({"prompt": "abc", "max_tokens": 3}).encode()
        second.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        server.wait_health(lambda h: h["queued"] == 1)
        second.close()
        h = server.wait_health(lambda h: h["queued"] == 0)
        assert h["cancelled"] == 1 and h["slots_busy"] == 1
        first.close()
        server.wait_health(lambda h: h["slots_idle"] == 1)


# ----------------------------------------------------------------------------------------------------------
# the chat page in a real browser (Debian's chromium, headless)


def test_chat_page_in_headless_chromium(server, tmp_path):
    import shutil
    import subprocess
    import urllib.parse

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    question = "Who made the heaven?"
    url = f"{server.url}/?" + urllib.parse.urlencode({"q": question, "temp": "0", "max": "24"})
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=30000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    proc = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = client(server).chat.completions.create(model="x", messages=[{"role": "user", "content": question}],
                                                  max_tokens=24, temperature=0).choices[0].message.content
    import html
    bubble = '<div class="msg assistant done">' + html.escape(want, quote=False) + "</div>"
    assert bubble in proc.stdout, proc.stdout[-2000:]  # the streamed deltas, put together by the page
    assert '<div class="msg user">' + html.escape(question, quote=False) + "</div>" in proc.stdout
    assert "chatcmpl" in server.stderr and " (stream): " in server.stderr
    shot = tmp_path / "chat.png"
    proc = subprocess.run([*flags, "--window-size=900,700", f"--screenshot={shot}", url], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stderr[-2000:]


@pytest.mark.qemu
def test_aarch64_server_under_qemu_answers_like_the_native_one(tmp_path_factory, binary, model):
    from _runtime_helpers import qemu_runner

    arm = session_runtime(tmp_path_factory, target="aarch64")  # static, cross-compiled (skips without the tools)
    want = generate(binary, model, "In the beginning", 8)
    with Server(arm, model, "--slots", "2", runner=qemu_runner("cortex-a76"), start_timeout=120) as server:
        got = client(server).completions.create(model="x", prompt="In the beginning", max_tokens=8, temperature=0)
        assert got.choices[0].text == want["text"]
        assert got.usage.completion_tokens == len(want["tokens"])


def test_back_to_back_requests_never_find_the_slot_busy(binary, model):
    # a client that sends its next request as soon as it has an answer must find the slot free (--queue 0: a
    # slot still marked busy would answer 503). The race this guards against (the slot freed only after the
    # answer was sent) shows on a loaded machine, not reliably here; the counts are checked either way.
    with Server(binary, model, "--slots", "1", "--queue", "0") as server:
        c = client(server)
        for stream in (False, True) * 10:
            if stream:
                text = "".join(ch.choices[0].text for ch in c.completions.create(
                    model="x", prompt="abc", max_tokens=2, temperature=0, stream=True))
                assert text is not None
            else:
                assert c.completions.create(model="x", prompt="abc", max_tokens=2).usage.completion_tokens >= 1
        h = server.health()
        assert (h["completed"], h["rejected"]) == (20, 0)
