"""A scripted coding agent for the harness demo: a tool loop against an OpenAI-compatible
model, exactly as a real agent works, only small.

    python agent.py PROMPT_FILE

It sends the prompt to ``$OPENAI_BASE_URL/chat/completions`` (the harness points that at
its capture proxy), runs the tools the model asks for in the current folder —
``read_file``, ``write_file``, ``run`` (a shell command) — sends the results back, and
stops when the model answers in plain text, which it prints. Every model call passes
through tracebox's proxy, so the session is captured like any agent's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
    },
]
MAX_TURNS = 40


def chat(messages: list[dict]) -> dict:
    url = (
        os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8787/v1").rstrip("/")
        + "/chat/completions"
    )
    body = json.dumps({"model": "scripted-coder", "messages": messages, "tools": TOOLS}).encode()
    req = urllib.request.Request(
        url, body, {"content-type": "application/json", "authorization": "Bearer none"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["choices"][0]["message"]


def tool(name: str, args: dict) -> str:
    if name == "read_file":
        with open(args["path"], encoding="utf-8") as f:
            return f.read()
    if name == "write_file":
        with open(args["path"], "w", encoding="utf-8") as f:
            f.write(args["content"])
        return f"wrote {args['path']}"
    if name == "run":
        p = subprocess.run(args["command"], shell=True, capture_output=True, text=True, timeout=120)
        out = (p.stdout + p.stderr)[-4000:]
        return f"Exit code {p.returncode}\n{out}" if p.returncode else out
    return f"unknown tool {name}"


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        messages = [{"role": "user", "content": f.read()}]
    for _ in range(MAX_TURNS):
        msg = chat(messages)
        messages.append(msg)
        calls = msg.get("tool_calls") or []
        if not calls:
            print(msg.get("content") or "")
            return 0
        for c in calls:
            fn = c["function"]
            try:
                out = tool(fn["name"], json.loads(fn["arguments"] or "{}"))
            except Exception as e:  # noqa: BLE001 - reported to the model like a real agent would
                out = f"Error: {type(e).__name__}: {e}"
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": out})
    print("gave up: too many turns")
    return 1


if __name__ == "__main__":
    sys.exit(main())
