"""The run report: ``harness/<run>/report.md`` and ``report.html`` (self-contained, no
network: inline CSS and SVG charts drawn here).

Per generation: how many variants ran, solved, were stopped and why; the observations
accumulated (chart); the solved count (chart); the convergence path (what each variant
tried and how it ended); the winning diff; and where every trace is (the session ids of
the captured model calls, and the bucket keys of each variant's artefacts).
``write_report(project, run)`` (``tracebox harness report RUN``) renders both again from
what the run stored.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .. import svg
from ..errors import NotFound
from .run import key


def load(project, run_id: str) -> dict:
    got = project.ctx.get_json(key(run_id, "run.json"))
    if got is None:
        raise NotFound(f"no harness run {run_id} in project {project.name}")
    run = got[0]
    gens = []
    for g in run.get("generations") or []:
        n = g.get("generation")
        full = project.ctx.get_json(key(run_id, f"gen-{n}", "summary.json"))
        gens.append(full[0] if full else g)
    run["generations"] = gens
    return run


def _winner(project, run_id: str, run: dict) -> tuple[dict | None, str]:
    for g in run["generations"]:
        for r in g.get("results") or []:
            if r.get("solved"):
                try:
                    blob = project.ctx.store.get(
                        project.ctx.key(
                            key(run_id, f"gen-{g['generation']}", r["variant"], "diff.patch")
                        )
                    )
                    return r, blob.data.decode("utf-8", "replace")
                except NotFound:
                    return r, ""
    return None, ""


def _outcome(r: dict) -> str:
    if r.get("solved"):
        return "solved"
    if r.get("stopped"):
        return f"stopped: {r['stopped']}"
    return f"failed (validator exit {r.get('validator_exit')})"


def _loaded(project, run_id: str) -> tuple[str, dict, dict | None, str]:
    """What both renderings need: the run, its winning result and that result's diff."""
    run = load(project, run_id)
    return (run_id, run, *_winner(project, run_id, run))


def _markdown(run_id: str, run: dict, winner: dict | None, diff: str) -> str:
    gens = run["generations"]
    lines = [
        f"# Harness run {run_id}",
        "",
        f"Task: {' '.join(str(run['config']['task']).split())[:300]}",
        "",
        f"{len(gens)} generation(s) × {len(run['config']['variants'])} variant(s); observations "
        + (
            "given to each next generation."
            if run.get("use_observations", True)
            else "NOT given (ablation)."
        ),
        "",
        "| generation | variants | solved | stopped | observations (important / possible / informational) |",
        "|---|---|---|---|---|",
    ]
    for g in gens:
        o = g.get("observations") or {}
        lines.append(
            f"| {g['generation']} | {g['variants']} | {g['solved']} | {g['stopped']} | "
            f"{o.get('important', 0)} / {o.get('possible', 0)} / {o.get('informational', 0)} |"
        )
    lines += ["", "## Convergence path", ""]
    for g in gens:
        lines.append(f"### Generation {g['generation']}")
        lines.append("")
        for r in g.get("results") or []:
            lines.append(
                f"- **{r['variant']}** {json.dumps(r.get('params') or {})}: {_outcome(r)}; "
                f"changed {', '.join(r.get('changed_files') or []) or 'nothing'}; "
                f"{r.get('calls', 0)} model calls; session `{r['session']}`"
            )
        lines.append("")
    lines += ["## The winning change", ""]
    if winner:
        lines += [
            f"From **{winner['variant']}** (generation {winner['generation']}):",
            "",
            "```diff",
            diff.rstrip(),
            "```",
        ]
    else:
        lines.append("No variant passed the validator.")
    lines += [
        "",
        "## Where the traces are",
        "",
        f"- artefacts: `{key(run_id)}/gen-<n>/<variant>/` (prompt.md, agent.log, validator.txt, diff.patch, result.json)",
        f"- observations: `{key(run_id)}/gen-<n>/observations.md`",
        "- model calls: `tracebox search --session <session>` or `tracebox observe --run "
        f"{run_id}` (sessions `{run_id}.g<n>.<variant>`)",
    ]
    return "\n".join(lines) + "\n"


def html_report(project, run_id: str) -> str:
    return _html(*_loaded(project, run_id))


def _html(run_id: str, run: dict, winner: dict | None, diff: str) -> str:
    gens = run["generations"]
    n_variants = len(run["config"]["variants"])
    solved = svg.bars(
        "solved per generation",
        [(f"gen {g['generation']}", g["solved"]) for g in gens],
        "#2e7d32",
        ymax=n_variants,
    )
    obs = svg.bars(
        "observations accumulated",
        [(f"gen {g['generation']}", sum((g.get("observations") or {}).values())) for g in gens],
        "#1565c0",
    )
    rows = "".join(
        f"<tr><td>{g['generation']}</td><td>{g['variants']}</td><td>{g['solved']}</td><td>{g['stopped']}</td></tr>"
        for g in gens
    )
    path = []
    for g in gens:
        items = "".join(
            f"<li class='{('ok' if r.get('solved') else 'stop' if r.get('stopped') else 'bad')}'>"
            f"<b>{html.escape(r['variant'])}</b> {html.escape(json.dumps(r.get('params') or {}))}: "
            f"{html.escape(_outcome(r))} — changed {html.escape(', '.join(r.get('changed_files') or []) or 'nothing')}; "
            f"session <code>{html.escape(r['session'])}</code></li>"
            for r in g.get("results") or []
        )
        path.append(f"<h3>Generation {g['generation']}</h3><ul>{items}</ul>")
    win = (
        f"<p>From <b>{html.escape(winner['variant'])}</b> (generation {winner['generation']}):</p><pre>{html.escape(diff)}</pre>"
        if winner
        else "<p>No variant passed the validator.</p>"
    )
    css = (
        "body{font:14px system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}.ok{color:#2e7d32}.bad{color:#b71c1c}"
        ".stop{color:#e65100}.charts{display:flex;gap:2em;flex-wrap:wrap}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>tracebox harness {html.escape(run_id)}</title><style>{css}</style></head><body>"
        f"<h1>Harness run {html.escape(run_id)}</h1>"
        f"<p>{html.escape(' '.join(str(run['config']['task']).split())[:400])}</p>"
        f"<p>{len(gens)} generation(s) × {n_variants} variant(s); observations "
        f"{'given to each next generation' if run.get('use_observations', True) else 'not given (ablation)'}.</p>"
        f"<div class='charts'>{solved}{obs}</div>"
        f"<table><tr><th>generation</th><th>variants</th><th>solved</th><th>stopped</th></tr>{rows}</table>"
        f"<h2>Convergence path</h2>{''.join(path)}<h2>The winning change</h2>{win}"
        f"<h2>Where the traces are</h2><p>Artefacts under <code>{html.escape(key(run_id))}/gen-&lt;n&gt;/&lt;variant&gt;/</code>; "
        f"model calls as sessions <code>{html.escape(run_id)}.g&lt;n&gt;.&lt;variant&gt;</code>.</p>"
        "</body></html>\n"
    )


def write_report(project, run_id: str) -> dict[str, Any]:
    loaded = _loaded(project, run_id)
    md, page = _markdown(*loaded), _html(*loaded)
    store = project.ctx.store
    store.put(project.ctx.key(key(run_id, "report.md")), md.encode())
    store.put(project.ctx.key(key(run_id, "report.html")), page.encode())
    return {"md": md, "html": page}
