"""Streamed replies rebuilt as the non-streamed reply (``providers.reassemble``), so the
store keeps a streamed call's messages as nodes that the next request runs through.

Each provider's stream from the fake upstream is compared with the same call answered
without streaming: the assistant messages must be the very same nodes. A hand-written
Anthropic stream covers thinking, signatures and tool input split into JSON fragments;
hostile input must not crash or invent content.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import fake_upstream as fu
from tracebox.capture.proxy import providers
from tracebox.capture.proxy.exchange import Exchange
from tracebox.capture.proxy.store import CallStore, calls_to_sessions, load_calls
from tracebox.coord.context import iso, new_id, now
from tracebox.project import init_project, open_project
from tracebox.trace import dag
from tracebox.trace.model import Reasoning, Text, ToolCall

# provider → (fake handler, path, stream request fields)
CASES = {
    "anthropic": (fu.anthropic, "/v1/messages", {"stream": True}, {}),
    "openai-chat": (fu.openai_chat, "/v1/chat/completions", {"stream": True}, {}),
    "openai-responses": (fu.openai_responses, "/v1/responses", {"stream": True}, {}),
    "ollama": (fu.ollama, "/api/chat", {}, {"stream": False}),
    "gemini": (fu.gemini, "/v1beta/models/gemini-fake:streamGenerateContent", {}, {}),
}


def _replies(handler, path: str, base: dict, streaming: dict, plain: dict, scenario: str, query=""):
    """(plain reply, streamed reply) of one call: the same ids, text and tool call."""
    plain_path = path.replace(":streamGenerateContent", ":generateContent")
    scope = {
        "path": plain_path,
        "query_string": b"",
        "headers": [(b"x-fake-scenario", scenario.encode())],
    }
    call = fu._call(scope, json.dumps({**base, **plain}).encode())
    one = b"".join(handler(call)[0])
    call = dataclasses.replace(call, path=path, query=query, body={**base, **streaming})
    return one, b"".join(handler(call)[0])


def _messages(provider: str, reply: dict | None) -> list[bytes]:
    return [dag.canonical(m) for m in dag.response_messages(provider, reply)[0]]


@pytest.mark.parametrize("scenario", ["ok", "tool"])
@pytest.mark.parametrize("provider", list(CASES))
def test_stream_reassembles_to_the_plain_reply(provider: str, scenario: str):
    handler, path, streaming, plain_fields = CASES[provider]
    base = {"model": "m-1", "messages": [{"role": "user", "content": "hi"}]}
    for query in ("", "alt=sse") if provider == "gemini" else ("",):
        plain, stream = _replies(handler, path, base, streaming, plain_fields, scenario, query)
        want = _messages(provider, json.loads(plain))
        assert want, "the plain reply has assistant messages"
        assert stream != plain
        rebuilt = providers.reassemble(provider, stream)
        assert _messages(provider, rebuilt) == want, (provider, scenario, query)


ANTHROPIC_STREAM = b"".join(
    b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"
    for e in [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [],
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "check."},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "signature_delta", "signature": "c2ln"},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "Running "},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "text_delta", "text": "tests."},
        },
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": '{"comm'},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": 'and": "pytest -q"}'},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 42},
        },
        {"type": "message_stop"},
    ]
)


def test_anthropic_thinking_signature_and_fragmented_tool_input():
    msg = providers.reassemble("anthropic", ANTHROPIC_STREAM)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "Let me check.", "signature": "c2ln"},
        {"type": "text", "text": "Running tests."},
        {"type": "tool_use", "id": "toolu_9", "name": "Bash", "input": {"command": "pytest -q"}},
    ]
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {"input_tokens": 10, "output_tokens": 42}


@pytest.mark.parametrize("provider", list(providers.REASSEMBLERS))
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"data: [DONE]\n\n",
        b"not a stream at all",
        b'data: {"type": "content_block_delta", "index": 99999999, "delta": {"type": "text_delta", "text": "x"}}\n\n',
        b'data: {"choices": [{"index": -1, "delta": {"content": "x"}}]}\n\n',
        b'data: {"choices": "nope", "candidates": 3, "message": 1}\n\n',
        b'{"message": {"content": 5, "tool_calls": "x"}, "done": true}\n',
        b"data: " + b"[" * 100_000 + b"\n\n",
    ],
)
def test_hostile_streams_never_crash(provider: str, body: bytes):
    rebuilt = providers.reassemble(provider, body)
    assert rebuilt is None or isinstance(rebuilt, dict)
    dag.response_messages(provider, rebuilt)  # and the store can take whatever came out


def test_a_streamed_call_is_stored_as_nodes_the_next_call_runs_through(tmp_path):
    init_project(str(tmp_path / "b"), "demo", "alice")
    project = open_project(str(tmp_path / "b"), "demo", "alice")
    store = CallStore(project)
    first = {
        "model": "claude-x",
        "stream": True,
        "messages": [{"role": "user", "content": "run the tests"}],
    }
    assistant = providers.reassemble("anthropic", ANTHROPIC_STREAM)
    second = {
        "model": "claude-x",
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": assistant["content"]},  # as Claude Code re-sends it
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "ok"}],
            },
        ],
    }

    def x(body: dict, reply: bytes, streamed: bool) -> Exchange:
        return Exchange(
            id=new_id(),
            provider="anthropic",
            method="POST",
            path="/v1/messages",
            upstream="http://u",
            started=iso(now()),
            request_body=json.dumps(body).encode(),
            status=200,
            response_body=reply,
            streamed=streamed,
            request_headers={"x-tracebox-session": "s1"},
        )

    plain_reply = json.dumps({**assistant, "content": [{"type": "text", "text": "done"}]})
    store.ship([x(first, ANTHROPIC_STREAM, True)], on_reject=pytest.fail)
    nodes_after_first = store.nodes_written
    store.ship([x(second, plain_reply.encode(), False)], on_reject=pytest.fail)
    store.close()
    # the second call re-sent the streamed answer: only its tool result and reply are new
    assert store.nodes_written - nodes_after_first == 2 + 1  # tool result, reply, params
    calls = load_calls(project, "s1")
    assert "raw" not in calls[0]["response"]  # a complete stream is kept as messages only
    session = calls_to_sessions(project, "s1")
    parts = [p for st in session.steps for p in st.parts]
    assert any(isinstance(p, Reasoning) and p.text == "Let me check." for p in parts)
    assert any(isinstance(p, ToolCall) and p.arguments == {"command": "pytest -q"} for p in parts)
    assert [p.text for p in parts if isinstance(p, Text)].count("Running tests.") == 1
