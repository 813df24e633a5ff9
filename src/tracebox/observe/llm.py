"""The optional model pass over observations: re-rank within a priority, and summarize.

Configured in ``.tracebox.toml``::

    [observe.llm]
    base_url = "http://127.0.0.1:11434/v1"   # any OpenAI-compatible endpoint
    model = "qwen2.5-coder"
    api_key_env = "OPENAI_API_KEY"           # the variable holding the key, if one is needed

The model sees each entry's fingerprint, priority, kind, title and counts (already
scrubbed text from the traces) and answers ``{"order": [fingerprints], "summary": "…"}``.
Only fingerprints that exist are used: the model can reorder entries inside their
priority and write a summary, labelled as its own; it can never add, remove or change an
observation or its evidence. Any failure (no answer, bad JSON) leaves the deterministic
result as it is, with a warning.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

from .merge import ordered

TIMEOUT = 120.0
MAX_ENTRIES = 200
PROMPT = (
    "You help coding agents learn from earlier attempts. Below are observations extracted "
    'from their traces. Reply with JSON only: {"order": [ids, most useful first], '
    '"summary": "3 sentences at most on what to do and what to avoid"}. Use only the ids '
    "given; do not invent facts."
)


def rerank(entries: dict[str, dict], cfg: dict | None) -> tuple[dict[str, dict], str | None]:
    from ..errors import ConfigError

    if not isinstance(cfg, dict) or not cfg.get("base_url") or not cfg.get("model"):
        raise ConfigError("--llm needs [observe.llm] base_url and model in .tracebox.toml")
    items = [
        {k: e.get(k) for k in ("fingerprint", "priority", "kind", "title", "count", "sessions")}
        for e in ordered(entries)[:MAX_ENTRIES]
    ]
    body = {
        "model": cfg["model"],
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": json.dumps(items, ensure_ascii=False)},
        ],
        "temperature": 0,
    }
    headers = {"content-type": "application/json"}
    key = os.environ.get(str(cfg.get("api_key_env") or ""), "")
    if key:
        headers["authorization"] = f"Bearer {key}"
    url = str(cfg["base_url"]).rstrip("/") + "/chat/completions"
    try:
        req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            reply = json.loads(resp.read(8 << 20))
        text = reply["choices"][0]["message"]["content"]
        answer = json.loads(text[text.find("{") : text.rfind("}") + 1])
    except (OSError, ValueError, KeyError, IndexError, TypeError, urllib.error.URLError) as e:
        print(
            f"tracebox: warning: the --llm pass failed ({type(e).__name__}); kept the rule order",
            file=sys.stderr,
        )
        return entries, None
    order = [f for f in answer.get("order") or [] if isinstance(f, str) and f in entries]
    out = {k: dict(v) for k, v in entries.items()}
    for i, f in enumerate(dict.fromkeys(order)):
        out[f]["llm_rank"] = i
    summary = answer.get("summary")
    if isinstance(summary, str) and summary.strip():
        summary = f"Summary by {cfg['model']} (a model's words; the evidence below is from the traces): {summary.strip()[:1500]}"
    else:
        summary = None
    return out, summary
