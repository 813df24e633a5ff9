"""The capture proxy: faithful forwarding and complete capture, with real clients.

The official ``anthropic`` and ``openai`` SDKs (and plain httpx for Ollama and Gemini)
talk to a loopback fake of each provider (``fake_upstream``) once directly and once
through the proxy; what the client receives must be the same bytes. Every exchange —
errors, timeouts, broken streams and disconnects included — must reach the sink, with
no secret in it. Expected summaries are computed here from the raw bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import anthropic
import httpx
import openai
import pytest

import fake_upstream
from tracebox.capture.proxy import providers
from tracebox.capture.proxy.app import MemorySink, ProxyApp
from tracebox.capture.proxy.exchange import Exchange, to_bytes
from tracebox.capture.proxy.server import start_in_thread, state_file

SECRETS = {
    "authorization": "Bearer sk-test-AUTHSECRET111",
    "x-api-key": "sk-ant-APIKEYSECRET222",
    "api-key": "azure-KEYSECRET333",
    "x-goog-api-key": "AIza-GOOGSECRET444",
    "cookie": "session=COOKIESECRET555",
    "x-custom-token": "CUSTOMTOKEN666",
}
QUERY_SECRET = "QUERYSECRET777"
KEEP_HEADERS = ("content-type", "x-request-id", "content-length")


@pytest.fixture(scope="module")
def fake():
    f = fake_upstream.start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def proxy(fake):
    app = ProxyApp({k: fake.url for k in providers.UPSTREAMS}, MemorySink(), read_timeout=1.5)
    run = start_in_thread(app)
    yield run
    run.stop()


def tid() -> str:
    return uuid.uuid4().hex


def captured(proxy, test_id: str, timeout: float = 10.0) -> Exchange:
    """The exchange the proxy captured for the request carrying ``x-test-id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for x in list(proxy.app.sink.exchanges):
            if x.request_headers.get("x-test-id") == test_id:
                return x
        time.sleep(0.01)
    raise AssertionError(f"no exchange captured for {test_id}")


def received(fake, test_id: str) -> dict:
    """The request the fake upstream received with ``x-test-id``."""
    hits = [r for r in fake.app.requests if (b"x-test-id", test_id.encode()) in r["headers"]]
    assert len(hits) == 1, f"upstream saw {len(hits)} requests for {test_id}"
    return hits[0]


def no_secrets(x: Exchange) -> None:
    blob = to_bytes(x)
    for value in [*SECRETS.values(), QUERY_SECRET, "fake-cookie-secret"]:
        assert value.encode() not in blob, f"secret {value} stored in the exchange"


def same_reply(a: httpx.Response, b: httpx.Response, body_a: bytes, body_b: bytes) -> None:
    assert a.status_code == b.status_code
    assert body_a == body_b
    for h in KEEP_HEADERS:
        assert a.headers.get(h) == b.headers.get(h), h


# -- SDK clients, direct and through the proxy -------------------------------------------


def _anthropic(base: str, test_id: str, scenario: str = "ok") -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base,
        api_key=SECRETS["x-api-key"],
        max_retries=0,
        default_headers={"x-test-id": test_id, "x-fake-scenario": scenario},
    )


def _openai(base: str, test_id: str, scenario: str = "ok") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base + "/v1",
        api_key=SECRETS["authorization"].split()[1],
        max_retries=0,
        default_headers={"x-test-id": test_id, "x-fake-scenario": scenario},
    )


ANTHROPIC_ARGS = {
    "model": "claude-test-model",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "weather in Paris?"}],
}


@pytest.mark.parametrize("scenario", ["ok", "tool"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_same_bytes_and_captured(fake, proxy, stream, scenario):
    replies = []
    ids = []
    for base in (fake.url, proxy.url):
        ids.append(tid())
        client = _anthropic(base, ids[-1], scenario)
        with client.messages.with_streaming_response.create(**ANTHROPIC_ARGS, stream=stream) as r:
            replies.append((r.http_response, r.http_response.read()))
    (direct, body_d), (proxied, body_p) = replies
    same_reply(direct, proxied, body_d, body_p)

    x = captured(proxy, ids[1])
    upstream = received(fake, ids[1])
    assert x.provider == "anthropic" and x.method == "POST" and x.path == "/v1/messages"
    assert x.status == 200 and x.error is None and x.streamed is stream
    assert x.request_body == upstream["body"]
    assert json.loads(x.request_body)["stream"] is stream
    assert x.response_body == body_p
    assert x.ttfb_ms is not None and x.total_ms >= x.ttfb_ms
    # the key reached the upstream but not the capture
    assert any(SECRETS["x-api-key"].encode() in v for _, v in upstream["headers"])
    assert "x-api-key" not in x.request_headers and "authorization" not in x.request_headers
    no_secrets(x)

    # the SDK parses the proxied reply like the direct one
    client = _anthropic(proxy.url, tid(), scenario)
    if stream:
        with client.messages.stream(**ANTHROPIC_ARGS) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(**ANTHROPIC_ARGS)
    expect = _anthropic_expected(body_p, stream)
    text = "".join(b.text for b in message.content if b.type == "text")
    assert text == expect["text"]
    assert [b.name for b in message.content if b.type == "tool_use"] == expect["tools"]
    got = providers.summarize("anthropic", x.request_body, x.response_body, stream)
    assert got["model"] == ANTHROPIC_ARGS["model"]
    assert got["usage"] == expect["usage"]
    assert [c["name"] for c in got["tool_calls"]] == expect["tools"]
    assert got["stop_reason"] == expect["stop"]


def _anthropic_expected(body: bytes, stream: bool) -> dict:
    """Text, tool names, usage and stop reason read straight from the raw reply."""
    if not stream:
        m = json.loads(body)
        blocks, u, stop = m["content"], m["usage"], m["stop_reason"]
        text = "".join(b["text"] for b in blocks if b["type"] == "text")
    else:
        evs = [json.loads(ln[6:]) for ln in body.decode().splitlines() if ln.startswith("data: ")]
        start = next(e for e in evs if e["type"] == "message_start")["message"]
        delta = next(e for e in evs if e["type"] == "message_delta")
        u = {**start["usage"], **delta["usage"]}
        blocks = [e["content_block"] for e in evs if e["type"] == "content_block_start"]
        text = "".join(
            e["delta"].get("text", "") for e in evs if e["type"] == "content_block_delta"
        )
        stop = delta["delta"]["stop_reason"]
    return {
        "text": text,
        "tools": [b["name"] for b in blocks if b["type"] == "tool_use"],
        "stop": stop,
        "usage": {
            "input": u["input_tokens"],
            "output": u["output_tokens"],
            "cache_read": u["cache_read_input_tokens"],
            "cache_write": u["cache_creation_input_tokens"],
            "reasoning": 0,
        },
    }


@pytest.mark.parametrize("scenario", ["ok", "tool"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_sdk_same_bytes_and_captured(fake, proxy, stream, scenario):
    args = {
        "model": "gpt-5-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if stream:
        args["stream_options"] = {"include_usage": True}
    replies, ids = [], []
    for base in (fake.url, proxy.url):
        ids.append(tid())
        client = _openai(base, ids[-1], scenario)
        with client.chat.completions.with_streaming_response.create(**args) as r:
            replies.append((r.http_response, r.http_response.read()))
    (direct, body_d), (proxied, body_p) = replies
    same_reply(direct, proxied, body_d, body_p)
    x = captured(proxy, ids[1])
    assert x.provider == "openai-chat" and x.path == "/v1/chat/completions"
    assert x.response_body == body_p and x.status == 200
    assert x.request_body == received(fake, ids[1])["body"]
    no_secrets(x)

    # independent reading of the raw reply
    if stream:
        docs = [
            json.loads(ln[6:])
            for ln in body_p.decode().splitlines()
            if ln.startswith("data: ") and ln != "data: [DONE]"
        ]
        usage = next(d["usage"] for d in docs if d.get("usage"))
        tools = [
            tc["function"]["name"]
            for d in docs
            for ch in d["choices"]
            for tc in ch["delta"].get("tool_calls", [])
            if "name" in tc.get("function", {})
        ]
        text = "".join(ch["delta"].get("content") or "" for d in docs for ch in d["choices"])
    else:
        doc = json.loads(body_p)
        usage = doc["usage"]
        msg = doc["choices"][0]["message"]
        tools = [tc["function"]["name"] for tc in msg.get("tool_calls", [])]
        text = msg["content"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    got = providers.summarize("openai-chat", x.request_body, x.response_body, stream)
    assert got["usage"] == {
        "input": usage["prompt_tokens"] - cached,
        "output": usage["completion_tokens"],
        "cache_read": cached,
        "cache_write": 0,
        "reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
    }
    assert [c["name"] for c in got["tool_calls"]] == tools
    assert got["model"] == "gpt-5-mini"

    client = _openai(proxy.url, tid(), scenario)
    if stream:
        chunks = list(client.chat.completions.create(**args))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    else:
        assert client.chat.completions.create(**args).choices[0].message.content == text


@pytest.mark.parametrize("scenario", ["ok", "tool"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses_sdk_same_bytes_and_captured(fake, proxy, stream, scenario):
    args = {"model": "gpt-5", "input": "hello", "stream": stream}
    replies, ids = [], []
    for base in (fake.url, proxy.url):
        ids.append(tid())
        client = _openai(base, ids[-1], scenario)
        with client.responses.with_streaming_response.create(**args) as r:
            replies.append((r.http_response, r.http_response.read()))
    (direct, body_d), (proxied, body_p) = replies
    same_reply(direct, proxied, body_d, body_p)
    x = captured(proxy, ids[1])
    assert x.provider == "openai-responses" and x.response_body == body_p
    no_secrets(x)
    if stream:
        evs = [json.loads(ln[6:]) for ln in body_p.decode().splitlines() if ln.startswith("data: ")]
        final = next(e for e in evs if e["type"] == "response.completed")["response"]
    else:
        final = json.loads(body_p)
    u = final["usage"]
    cached = u["input_tokens_details"]["cached_tokens"]
    got = providers.summarize("openai-responses", x.request_body, x.response_body, stream)
    assert got["usage"] == {
        "input": u["input_tokens"] - cached,
        "output": u["output_tokens"],
        "cache_read": cached,
        "cache_write": 0,
        "reasoning": u["output_tokens_details"]["reasoning_tokens"],
    }
    calls = [o["call_id"] for o in final["output"] if o["type"] == "function_call"]
    assert [c["id"] for c in got["tool_calls"]] == calls
    client = _openai(proxy.url, tid(), scenario)
    if stream:
        with client.responses.stream(model="gpt-5", input="hello") as s:
            resp = s.get_final_response()
    else:
        resp = client.responses.create(**args)
    texts = [c["text"] for o in final["output"] if o["type"] == "message" for c in o["content"]]
    assert resp.output_text == "".join(texts)


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/chat", {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}),
        ("/api/chat", {"model": "llama3", "messages": [], "stream": False}),
        ("/api/generate", {"model": "llama3", "prompt": "hi"}),
        ("/v1beta/models/gemini-2.5-flash:generateContent", {"contents": []}),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {"contents": []}),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"contents": []}),
    ],
)
@pytest.mark.parametrize("scenario", ["ok", "tool"])
def test_ollama_and_gemini_same_bytes_and_captured(fake, proxy, path, body, scenario):
    gemini = path.startswith("/v1beta")
    sep = "&" if "?" in path else "?"
    full = path + (f"{sep}key={QUERY_SECRET}" if gemini else "")
    replies, ids = [], []
    for base in (fake.url, proxy.url):
        ids.append(tid())
        headers = {"x-test-id": ids[-1], "x-fake-scenario": scenario}
        if gemini:
            headers["x-goog-api-key"] = SECRETS["x-goog-api-key"]
        with httpx.stream("POST", base + full, json=body, headers=headers, timeout=10) as r:
            replies.append((r, r.read()))
    (direct, body_d), (proxied, body_p) = replies
    same_reply(direct, proxied, body_d, body_p)
    x = captured(proxy, ids[1])
    assert x.provider == ("gemini" if gemini else "ollama")
    assert x.response_body == body_p and x.status == 200
    assert x.path == path  # the key parameter is gone, the rest kept
    up = received(fake, ids[1])
    if gemini:
        assert QUERY_SECRET.encode() in up["query"]  # forwarded, not stored
    no_secrets(x)
    streamed = "stream" in path or (not gemini and body.get("stream") is not False)
    assert x.streamed is streamed
    got = providers.summarize(x.provider, x.request_body, x.response_body, streamed, x.path)
    if gemini:
        text = body_p.decode()
        docs = (
            [json.loads(ln[6:]) for ln in text.splitlines() if ln.startswith("data: ")]
            if "alt=sse" in path
            else (json.loads(text) if streamed else [json.loads(text)])
        )
        meta = docs[-1]["usageMetadata"]
        assert got["usage"]["cache_read"] == meta["cachedContentTokenCount"]
        assert got["usage"]["input"] == meta["promptTokenCount"] - meta["cachedContentTokenCount"]
        assert got["usage"]["reasoning"] == meta["thoughtsTokenCount"]
        assert got["model"] == "gemini-2.5-flash"
        names = [
            p["functionCall"]["name"]
            for d in docs
            for p in d["candidates"][0]["content"]["parts"]
            if "functionCall" in p
        ]
    else:
        docs = [json.loads(ln) for ln in body_p.splitlines() if ln.strip()]
        last = docs[-1]
        assert got["usage"]["input"] == last["prompt_eval_count"]
        assert got["usage"]["output"] == last["eval_count"]
        assert got["stop_reason"] == last["done_reason"]
        names = [
            tc["function"]["name"]
            for d in docs
            for tc in d.get("message", {}).get("tool_calls", [])
        ]
    assert [c["name"] for c in got["tool_calls"]] == names


# -- errors of every kind are forwarded and captured --------------------------------------


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_error_replies_forwarded_and_captured(fake, proxy, status):
    ids = [tid(), tid()]
    errors = []
    for base, test_id in zip((fake.url, proxy.url), ids, strict=True):
        client = _anthropic(base, test_id, f"error:{status}")
        with pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(**ANTHROPIC_ARGS)
        errors.append(e.value)
    assert errors[0].status_code == errors[1].status_code == status
    assert type(errors[0]) is type(errors[1])
    assert errors[0].body == errors[1].body
    x = captured(proxy, ids[1])
    assert x.status == status
    assert json.loads(x.response_body) == errors[1].body
    summary = providers.summarize("anthropic", x.request_body, x.response_body, False)
    assert summary["error"] == f"{errors[1].body['error']['type']}: fake"
    no_secrets(x)


def test_openai_error_reply(fake, proxy):
    test_id = tid()
    with pytest.raises(openai.RateLimitError) as e:
        _openai(proxy.url, test_id, "error:429").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    x = captured(proxy, test_id)
    assert x.status == 429
    assert json.loads(x.response_body)["error"] == e.value.body


def test_upstream_unreachable_is_502_and_captured():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    app = ProxyApp({k: dead for k in providers.UPSTREAMS}, MemorySink())
    run = start_in_thread(app)
    try:
        test_id = tid()
        with pytest.raises(anthropic.APIStatusError) as e:
            _anthropic(run.url, test_id).messages.create(**ANTHROPIC_ARGS)
        assert e.value.status_code == 502
        assert e.value.body["error"]["type"] == "upstream_unreachable"
        (x,) = app.sink.exchanges
        assert x.status is None and x.error.startswith("upstream_unreachable")
        assert x.request_headers["x-test-id"] == test_id
        assert app.status()["upstreams"]["anthropic"]["errors"] == 1
        no_secrets(x)
    finally:
        run.stop()


def test_upstream_timeout_is_504_and_captured(proxy):
    test_id = tid()
    with pytest.raises(openai.APIStatusError) as e:
        _openai(proxy.url, test_id, "hang").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.status_code == 504
    x = captured(proxy, test_id)
    assert x.status is None and x.error == "upstream_timeout"


def test_slow_first_byte_measured(fake, proxy):
    test_id = tid()
    headers = {"x-test-id": test_id, "x-fake-scenario": "slow-first-byte:400"}
    r = httpx.post(proxy.url + "/api/chat", json={"model": "m"}, headers=headers, timeout=10)
    assert r.status_code == 200
    x = captured(proxy, test_id)
    assert x.ttfb_ms >= 400  # the reply cannot start before the upstream sends it
    assert x.extra["first_token_ms"] >= x.ttfb_ms


@pytest.mark.parametrize("path", ["/v1/messages", "/api/chat"])
def test_stream_failing_midway(fake, proxy, path):
    body = {"model": "m", "stream": True, "messages": []}
    got, ids = [], []
    for base in (fake.url, proxy.url):
        ids.append(tid())
        headers = {"x-test-id": ids[-1], "x-fake-scenario": "fail-midway"}
        chunks = []
        with pytest.raises(httpx.RemoteProtocolError):
            with httpx.stream("POST", base + path, json=body, headers=headers, timeout=10) as r:
                for c in r.iter_raw():
                    chunks.append(c)
        got.append(b"".join(chunks))
    assert got[0] == got[1] and got[1]  # the client keeps what arrived before the break
    x = captured(proxy, ids[1])
    assert x.error.startswith("stream_error") and x.status == 200
    assert x.response_body == got[1]


def test_client_disconnect_mid_stream_cancels_upstream(fake, proxy):
    test_id = tid()
    headers = {"x-test-id": test_id, "x-fake-scenario": "slow-stream:300", "x-fake-chunks": "20"}
    body = {"model": "m", "stream": True, "messages": []}
    with httpx.stream(
        "POST", proxy.url + "/v1/messages", json=body, headers=headers, timeout=10
    ) as r:
        first = next(r.iter_raw())
    assert first.startswith(b"event: message_start")
    x = captured(proxy, test_id)
    assert x.client_disconnected and x.error == "client_disconnected"
    headers = {"x-fake-chunks": "20"}  # the same reply, without the pauses
    full = httpx.post(fake.url + "/v1/messages", json=body, headers=headers, timeout=10).content
    assert full.startswith(x.response_body) and 0 < len(x.response_body) < len(full)


def test_64_parallel_streams(fake, proxy):
    async def one(client, i):
        test_id = f"par-{i}-{tid()}"
        body = {"model": f"m{i}", "stream": True, "messages": [{"role": "user", "content": i}]}
        headers = {"x-test-id": test_id, "x-fake-chunks": str(5 + i % 7)}
        out = []
        for base in (fake.url, proxy.url):
            async with client.stream(
                "POST", base + "/v1/messages", json=body, headers=headers
            ) as r:
                out.append(b"".join([c async for c in r.aiter_raw()]))
        return test_id, out

    async def main():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            return await asyncio.gather(*(one(client, i) for i in range(64)))

    results = asyncio.run(main())
    for test_id, (direct, proxied) in results:
        assert direct == proxied and direct.endswith(
            b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
        )
        x = captured(proxy, test_id)
        assert x.response_body == proxied and x.error is None


# -- headers ---------------------------------------------------------------------------


def test_headers_forwarded_secrets_never_stored(fake, proxy):
    test_id = tid()
    headers = {
        **SECRETS,
        "x-test-id": test_id,
        "x-tracebox-session": "sess-1",
        "x-tracebox-agent": "alice",
        "x-custom": "kept",
        "connection": "keep-alive",
    }
    url = proxy.url + f"/openai/v1/chat/completions?api_key={QUERY_SECRET}&mode=x"
    r = httpx.post(url, json={"model": "m", "messages": []}, headers=headers, timeout=10)
    assert r.status_code == 200
    assert "set-cookie" in r.headers  # replies are forwarded whole, only not stored
    up = received(fake, test_id)
    got = dict(up["headers"])
    assert up["path"] == "/v1/chat/completions"  # the /openai prefix is routing only
    for name, value in SECRETS.items():
        assert got[name.encode()] == value.encode()
    assert got[b"x-custom"] == b"kept"
    assert b"x-tracebox-session" not in got and b"x-tracebox-agent" not in got
    assert got[b"host"] == fake.url.split("//")[1].encode()
    x = captured(proxy, test_id)
    assert x.session == "sess-1" and x.agent == "alice"
    assert x.path == "/openai/v1/chat/completions?mode=x"
    assert x.request_headers["x-custom"] == "kept"
    assert "set-cookie" not in x.response_headers
    assert x.response_headers["x-request-id"] == r.headers["x-request-id"]
    no_secrets(x)


def test_claude_code_session_header(fake, proxy):
    test_id = tid()
    headers = {"x-test-id": test_id, "x-claude-code-session-id": "cc-uuid-1"}
    httpx.post(proxy.url + "/v1/messages", json={"model": "m"}, headers=headers, timeout=10)
    x = captured(proxy, test_id)
    assert x.session == "cc-uuid-1"
    assert (b"x-claude-code-session-id", b"cc-uuid-1") in received(fake, test_id)["headers"]


def test_routing():
    r = providers.route
    assert r("/v1/messages") == providers.Route("anthropic", "anthropic", "/v1/messages")
    assert r("/anthropic/v1/messages/count_tokens").provider == "other"
    assert r("/v1/models").upstream == "openai"
    assert r("/v1/models", anthropic_hint=True).upstream == "anthropic"
    assert r("/openai/v1/responses") == providers.Route(
        "openai-responses", "openai", "/v1/responses"
    )
    assert r("/api/tags") == providers.Route("other", "ollama", "/api/tags")
    assert r("/v1beta/models/g:countTokens").upstream == "gemini"
    assert r("/favicon.ico") is None


def test_unknown_path_is_404_not_forwarded(fake, proxy):
    before = len(fake.app.requests)
    r = httpx.get(proxy.url + "/nothing/here", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["type"] == "no_route"
    assert len(fake.app.requests) == before


def test_malformed_bodies_do_not_break_summaries():
    cases = [b"", b"\xff\xfe", b"{", b"data: {bad\n\n", b"[1,2", b'{"usage": "x"}']
    for provider in providers.PARSERS:
        for body in cases:
            for streamed in (False, True):
                s = providers.summarize(provider, body, body, streamed)
                assert s["usage"] == {
                    "input": 0,
                    "output": 0,
                    "cache_read": 0,
                    "cache_write": 0,
                    "reasoning": 0,
                }


def test_response_digest_ignores_minted_ids():
    """The same tool call answered twice digests the same (ids differ every time), so the
    harness's repeated_responses rule can see a model repeating itself."""

    def answer(call_id: str, command: str) -> dict:
        block = {"type": "tool_use", "id": call_id, "name": "Bash", "input": {"command": command}}
        return {"id": f"msg_{call_id}", "role": "assistant", "content": [block]}

    a = providers.response_digest("anthropic", answer("toolu_1", "make test"))
    b = providers.response_digest("anthropic", answer("toolu_2", "make test"))
    c = providers.response_digest("anthropic", answer("toolu_3", "make lint"))
    assert a is not None and a == b and a != c
    assert providers.response_digest("anthropic", None) is None


# -- the real command --------------------------------------------------------------------


def test_tracebox_proxy_subprocess(fake, cli, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracebox",
            "proxy",
            "--port",
            "0",
            "--upstream",
            f"anthropic={fake.url}",
            "--upstream",
            f"openai={fake.url}",
        ],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(state_file()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        url = json.load(open(state_file()))["url"]
        test_id = tid()
        msg = _anthropic(url, test_id).messages.create(**ANTHROPIC_ARGS)
        assert msg.model == ANTHROPIC_ARGS["model"]
        chat = _openai(url, tid()).chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": "x"}]
        )
        assert chat.model == "gpt-x"
        doc = cli.json("proxy", "status")
        assert doc["pid"] == proc.pid and doc["exchanges"] == 2
        assert doc["upstreams"]["anthropic"]["calls"] == 1
        assert doc["upstreams"]["openai"]["url"] == fake.url
        human = cli("proxy", "status", check=True).stdout
        assert "anthropic" in human and fake.url in human
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert not os.path.exists(state_file())  # removed on exit
    r = cli("proxy", "status")
    assert r.returncode == 1 and "no running tracebox proxy" in r.stderr


def test_bad_upstream_option(cli):
    r = cli("proxy", "--upstream", "nope=http://x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "PROVIDER=URL" in r.stderr
