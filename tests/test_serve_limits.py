"""bitedge-run serve facing untrusted clients: every limit answers its 4xx in the OpenAI error shape, slow and
garbage-sending clients do not stop the others, the API key is required when set; the server runs built with
ASan + UBSan and must end without a report. The HTTP and JSON parsers are fuzzed through kernels/tests/fuzz_http.c
(ASan + UBSan; libFuzzer when clang has it)."""

from __future__ import annotations

import json
import random
import time

import pytest

from _c_build import CToolMissing, compile_c, have_tool, run_binary, sanitizer_report
from _runtime_helpers import RUNTIME, session_runtime
from _serve_helpers import Server, read_all, write_dummy

FUZZ_SOURCES = (RUNTIME.parent / "tests" / "fuzz_http.c", RUNTIME / "http.c", RUNTIME / "json.c", RUNTIME / "api.c")


@pytest.fixture(scope="module")
def asan_binary(tmp_path_factory):
    try:
        return session_runtime(tmp_path_factory, sanitize=True)
    except CToolMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_dummy(tmp_path_factory.mktemp("limits") / "test.gguf")  # context 256


@pytest.fixture(scope="module")
def server(asan_binary, model):
    with Server(asan_binary, model, "--slots", "1", "--queue", "2", "--timeout", "3") as s:
        yield s


def post(path, body: bytes, content_type="application/json", extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def completion(**fields) -> bytes:
    return post("/v1/completions", json.dumps(dict({"prompt": "abc", "max_tokens": 2}, **fields)).encode())


def chat(messages, **fields) -> bytes:
    return post("/v1/chat/completions", json.dumps(dict({"messages": messages, "max_tokens": 2}, **fields)).encode())


def nested(depth: int) -> bytes:
    return b'{"prompt": "abc", "x": ' + b"[" * depth + b"]" * depth + b"}"


BAD = {
    # name: (request bytes, status, words in the message)
    "malformed json": (post("/v1/completions", b'{"prompt": "abc",}'), 400, "invalid JSON"),
    "not an object": (post("/v1/completions", b'["abc"]'), 400, "must be a JSON object"),
    "empty body": (post("/v1/completions", b""), 400, "invalid JSON"),
    "wrong content type": (post("/v1/completions", b'{"prompt": "a"}', "text/plain"), 415, "application/json"),
    "unknown route": (b"GET /v2/nothing HTTP/1.1\r\n\r\n", 404, "no such route"),
    "wrong method": (b"DELETE /v1/completions HTTP/1.1\r\n\r\n", 405, "use POST"),
    "head too large": (b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431, "too large"),
    "body too large": (b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 99999999\r\n\r\n", 413, "too large"),
    "no content length": (b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n\r\n", 411,
                          "Content-Length"),
    "chunked": (b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, "Transfer-Encoding"),
    "two content lengths": (b"POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400,
                            "more than one"),
    "http version": (b"GET /health HTTP/2.0\r\n\r\n", 505, "version"),
    "garbage request line": (b"\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03\r\n\r\n", 400, "request line"),
    "nul in head": (b"GET /health\x00 HTTP/1.1\r\n\r\n", 400, "NUL"),
    "json depth": (post("/v1/completions", nested(40)), 400, "nested too deeply"),
    "json depth ok": (post("/v1/completions", nested(20)), 200, ""),
    "string too long": (completion(prompt="a" * ((1 << 20) + 1)), 400, "string too long"),
    "invalid utf-8": (post("/v1/completions", b'{"prompt": "ab\xff\xfe"}'), 400, "invalid UTF-8"),
    "escaped nul": (post("/v1/completions", b'{"prompt": "a\\u0000b"}'), 400, "NUL"),
    "lone surrogate": (post("/v1/completions", b'{"prompt": "a\\ud800b"}'), 400, "surrogate"),
    "too many messages": (chat([{"role": "user", "content": "a"}] * 257), 400, "at most 256 messages"),
    "bad role": (chat([{"role": "tool", "content": "a"}]), 400, "role"),
    "no messages": (chat([]), 400, "non-empty array"),
    "image part": (chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), 400,
                   "text"),
    "max_tokens beyond the context": (completion(max_tokens=300), 400, "exceed the context"),
    "prompt beyond the context": (completion(prompt="word " * 400, max_tokens=1), 400, "exceed the context"),
    "prompt fills the context": (post("/v1/completions", json.dumps({"prompt": [5] * 256}).encode()), 400,
                                 "exceed the context"),
    "prompt fills the context but one": (post("/v1/completions", json.dumps({"prompt": [5] * 255}).encode()), 200, ""),
    "max_tokens zero": (completion(max_tokens=0), 400, "max_tokens"),
    "max_tokens a string": (completion(max_tokens="5"), 400, "must be a number"),
    "temperature": (completion(temperature=3), 400, "temperature"),
    "top_p": (completion(top_p=-0.5), 400, "top_p"),
    "n": (completion(n=2), 400, "n = 1"),
    "too many stops": (completion(stop=["a", "b", "c", "d", "e"]), 400, "at most 4"),
    "empty stop": (completion(stop=""), 400, "stop"),
    "token id out of range": (completion(prompt=[1, 2, 100000]), 400, "outside the vocabulary"),
    "tools": (completion(tools=[{"type": "function"}]), 400, "not supported"),
    "huge number": (post("/v1/completions", b'{"prompt": "a", "max_tokens": 1e999}'), 400, "max_tokens"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request(server, name):
    data, want_status, words = BAD[name]
    status, headers, body = server.raw(data)
    assert status == want_status, body
    assert headers["connection"] == "close"
    answer = json.loads(body)
    if want_status == 200:
        assert answer["usage"]["completion_tokens"] >= 1
        return
    err = answer["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert words in err["message"], err
    assert err["type"] == "invalid_request_error"


def test_context_error_names_the_code(server):
    status, _, body = server.raw(completion(max_tokens=300))
    err = json.loads(body)["error"]
    assert (status, err["code"], err["param"]) == (400, "context_length_exceeded", "max_tokens")


def test_slow_client_times_out_while_others_are_served(server):
    import select

    with server.connect() as slow:
        partial = b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
        deadline = time.monotonic() + 30
        sent = 0
        # one byte every 0.3 s: never a whole head within --timeout 3; look for the answer before each byte
        while time.monotonic() < deadline and not select.select([slow], [], [], 0.3)[0]:
            slow.sendall(partial[sent % len(partial):sent % len(partial) + 1])
            sent += 1
            if sent == 3:  # meanwhile another client gets its answer
                status, _, body = server.raw(completion(temperature=0))
                assert status == 200, body
        answer = read_all(slow)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert sent < 60  # it was cut off, not served after the whole head
    assert server.health()["slots_idle"] == 1


def test_garbage_on_many_connections_does_not_stop_the_server(server):
    rng = random.Random(5)
    for i in range(40):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
        if i % 4 == 0:
            junk = b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " + \
                str(len(junk)).encode() + b"\r\n\r\n" + junk
        status, _, body = server.raw(junk)
        assert 400 <= status < 500, (status, body[:200])
    status, _, body = server.raw(completion(temperature=0))
    assert status == 200, body


def test_too_many_connections_get_503_at_once(asan_binary, model):
    # --slots 1 --queue 0: 1 + 0 + 8 connections may be open; the next one is answered 503 without being read
    with Server(asan_binary, model, "--slots", "1", "--queue", "0", "--timeout", "20") as server:
        idle = [server.connect() for _ in range(9)]  # accepted in order: these 9 take every connection
        extra = server.connect()
        extra.settimeout(30)
        answer = read_all(extra)
        extra.close()
        for s in idle:
            s.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert b"too many connections" in answer


@pytest.mark.parametrize("header, status", [(None, 401), ("Bearer wrong-key", 401), ("Bearer s3cret-key-x", 401),
                                            ("Basic s3cret-key", 401), ("Bearer s3cret-key", 200)])
def test_api_key(asan_binary, model, header, status):
    with Server(asan_binary, model, "--api-key", "s3cret-key") as server:
        extra = f"Authorization: {header}\r\n" if header else ""
        got, headers, body = server.raw(post("/v1/completions", b'{"prompt": "a", "max_tokens": 1}', extra=extra))
        assert got == status, body
        if status == 401:
            err = json.loads(body)["error"]
            assert err["code"] == "invalid_api_key" and headers["www-authenticate"] == "Bearer"
            models, _, _ = server.raw(b"GET /v1/models HTTP/1.1\r\n" + extra.encode() + b"\r\n")
            assert models == 401
        assert server.health()["status"] == "ok"  # /health stays open for monitoring


def test_openai_client_with_api_key(binary_plain, model):
    openai = pytest.importorskip("openai")
    with Server(binary_plain, model, "--api-key", "k-123") as server:
        ok = openai.OpenAI(base_url=server.url + "/v1", api_key="k-123", max_retries=0)
        assert ok.completions.create(model="x", prompt="a", max_tokens=2).usage.prompt_tokens >= 1
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="k-124", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="x", prompt="a", max_tokens=2)


def test_api_key_from_the_environment(binary_plain, model):
    with Server(binary_plain, model, env={"BITEDGE_API_KEY": "env-key"}) as server:
        assert "API key required" in server.stderr
        assert server.raw(b"GET /v1/models HTTP/1.1\r\n\r\n")[0] == 401
        assert server.raw(b"GET /v1/models HTTP/1.1\r\nAuthorization: Bearer env-key\r\n\r\n")[0] == 200
        assert "env-key" not in " ".join(server.cmd)


@pytest.fixture(scope="module")
def binary_plain(tmp_path_factory):
    return session_runtime(tmp_path_factory)


def test_serve_option_errors(binary_plain, model, tmp_path):
    for args, words in [(["--port", "70000"], "--port"), (["--slots", "0"], "--slots"), (["--bogus"], "unknown option"),
                        (["-c", "100000"], "exceeds the model's context"), (["--host", "no.such.host.invalid"], "not an IP address"),
                        (["--api-key", ""], "--api-key")]:
        proc = run_binary(binary_plain, ["serve", "-m", model, *args], timeout=60)
        assert proc.returncode == 2 and proc.stderr.startswith("bitedge-run: error: "), (args, proc.stderr)
        assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run_binary(binary_plain, ["serve", "-m", tmp_path / "missing.gguf"], timeout=60)
    assert proc.returncode == 2 and "cannot open model" in proc.stderr


# ----------------------------------------------------------------------------------------------------------
# the parsers alone, fuzzed


SEEDS = {
    "chat": post("/v1/chat/completions", json.dumps({
        "model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "h\u00e9 \U0001F600"}]}],
        "stop": ["a", "\n"], "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}, "seed": -3,
        "temperature": 0.5, "top_p": 0.9, "top_k": 3}).encode()),
    "completion": post("/v1/completions", b'{"prompt": [1, 2, 3], "max_tokens": 1e2, "stop": "x\\u00e9\\ud83d\\ude00",'
                       b' "n": 1, "x": [null, true, false, -0.5e-3, {"": []}]}'),
    "get": b"GET /v1/models?x=1 HTTP/1.0\nAuthorization: Bearer k\nExpect: 100-continue\n\n",
}


@pytest.fixture(scope="module")
def fuzz_driver(tmp_path_factory):
    try:
        return compile_c(FUZZ_SOURCES, tmp_path_factory.mktemp("fuzzhttp") / "fuzz_http", sanitize=True)
    except CToolMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    for name, data in SEEDS.items():
        (d / name).write_bytes(data)
    return d


def run_fuzz(driver, *args) -> dict:
    proc = run_binary(driver, args, timeout=600)
    assert sanitizer_report(proc) is None, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.splitlines()[-1].split()
    return {last[i]: int(last[i + 1]) for i in range(0, len(last), 2)}, proc.stdout


def test_fuzz_seeds_parse(fuzz_driver, seed_files):
    summary, out = run_fuzz(fuzz_driver, *sorted(seed_files.iterdir()))
    assert summary["bugs"] == 0
    assert f"OK {seed_files / 'chat'} head=1 json=ok api=ok" in out
    assert f"OK {seed_files / 'completion'} head=1 json=ok api=ok" in out
    assert f"OK {seed_files / 'get'} head=1 json=err api=err" in out


def test_fuzz_driver_finds_an_overread(fuzz_driver, tmp_path):
    # the harness works: a deliberately bad parser call is caught (a read one past the input's heap block)
    src = tmp_path / "overread.c"
    src.write_text('#include "json.h"\n#include <stdlib.h>\n#include <string.h>\nint main(void) {\n'
                   '  char *p = malloc(4); memcpy(p, "[1,2", 4); json_value *r; char e[64];\n'
                   '  json_limits l = {8, 64, 64};\n  jbuf b = {0}; jb_put(&b, p, 5);\n'
                   '  json_doc *d = json_parse(p, 4, &l, &r, e, sizeof e); json_free(d); free(p); jb_free(&b);\n'
                   '  return 0;\n}\n')
    exe = compile_c([src, RUNTIME / "json.c"], tmp_path / "overread", sanitize=True)
    proc = run_binary(exe)
    assert proc.returncode != 0 and "AddressSanitizer" in (sanitizer_report(proc) or ""), proc.stderr[-2000:]


@pytest.mark.parametrize("seed_name, rng_seed", [("chat", 1), ("completion", 2), ("get", 3), ("chat", 4)])
def test_fuzz_random_mutations(fuzz_driver, seed_files, seed_name, rng_seed):
    summary, _ = run_fuzz(fuzz_driver, "--mutate", seed_files / seed_name, rng_seed, 40000)
    assert summary["files"] == 40000 and summary["bugs"] == 0
    assert summary["head_ok"] > 1000  # the mutations reach past the head parser ...
    if seed_name != "get":
        assert summary["json_ok"] > 500 and summary["api_ok"] > 100  # ... and past the JSON and field checks


def test_libfuzzer(seed_files, tmp_path):
    if not have_tool("clang"):
        pytest.skip("clang is not installed")
    try:
        exe = compile_c(FUZZ_SOURCES, tmp_path / "libfuzz_http", cc="clang", flags=("-fsanitize=fuzzer",),
                        sanitize=True, defines=("BE_LIBFUZZER",))
    except Exception as e:  # a clang without libFuzzer's runtime
        if "fuzzer" in str(e):
            pytest.skip(f"clang has no libFuzzer: {str(e).splitlines()[-1]}")
        raise
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in seed_files.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    proc = run_binary(exe, ["-runs=60000", "-seed=1", "-max_len=4096", str(corpus)], timeout=600)
    assert proc.returncode == 0 and sanitizer_report(proc) is None, proc.stderr[-3000:]
    assert "Done 60000 runs" in proc.stderr


@pytest.mark.parametrize("seed", [1, 3, 6])  # seeds whose answers have valid multi-byte characters among garbage
def test_random_bytes_stream_exactly_as_the_whole_answer(server, seed):
    # a random model's byte-level tokens give invalid UTF-8 and characters split across tokens: the stream holds
    # back a started character until it is complete, so the events concatenate to the non-streamed text
    from _serve_helpers import sse_events

    fields = {"prompt": "abc", "max_tokens": 60, "temperature": 1.5, "top_k": 0, "top_p": 1.0, "seed": seed,
              "ignore_eos": True}
    status, _, body = server.raw(completion(**fields))
    assert status == 200, body
    whole = json.loads(body)["choices"][0]["text"]
    status, _, body = server.raw(completion(**fields, stream=True))
    assert status == 200
    text = "".join(e["choices"][0]["text"] for e in sse_events(body))
    assert text == whole
    assert any(ord(ch) > 127 and ch != "\ufffd" for ch in whole) and "\ufffd" in whole  # both cases exercised


def test_threads_under_thread_sanitizer(tmp_path, model):
    # slots, the turn lock, the queue and disconnects with concurrent clients: ThreadSanitizer must stay quiet
    from concurrent.futures import ThreadPoolExecutor

    from _runtime_helpers import build_runtime
    from _serve_helpers import start_stream

    try:
        exe = build_runtime(tmp_path / "bitedge-run-tsan", extra=("-fsanitize=thread", "-g"), opt="-O1")
    except CToolMissing as e:
        pytest.skip(str(e))
    with Server(exe, model, "--slots", "2", "--queue", "8", "-t", "2") as server:
        leaving = start_stream(server, {"prompt": "abc", "max_tokens": 200, "ignore_eos": True})

        def ask(i):
            status, _, body = server.raw(completion(prompt=f"q{i}", max_tokens=12, seed=i, stream=bool(i % 2)))
            return status

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(ask, range(6)))
            leaving.close()
        assert statuses == [200] * 6
        h = server.wait_health(lambda h: h["slots_idle"] == 2)
        assert h["completed"] + h["cancelled"] == 7 and h["rejected"] == 0
    assert "ThreadSanitizer" not in server.stderr, server.stderr[-3000:]
