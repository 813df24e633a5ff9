"""The *current* observations an MCP server offers: where they are read from.

In order: the folder the server was started with (``--observations DIR``: the
``observations.{jsonl,md}`` that ``tracebox observe --out DIR`` writes and merges
into), else the last generation of the newest harness run in the bucket
(``harness/<run>/gen-<n>/observations.{jsonl,md}``, docs/harness.md); ``run`` picks a
harness run by id. Read fresh on every call: both places change while a server runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import NotFound
from ..observe import merge, render


@dataclass
class Current:
    source: str  # the folder, or harness/<run>/gen-<n> in the bucket
    entries: list[dict]  # most important first (observations.jsonl)
    counts: dict[str, int]  # entries per priority
    markdown: str  # observations.md
    jsonl: str  # observations.jsonl as stored


def current(project, folder: str | None, run: str | None = None) -> Current:
    if folder and run is None:
        jsonl_path = os.path.join(folder, "observations.jsonl")
        if not os.path.exists(jsonl_path):
            raise NotFound(
                f"no observations in {folder} yet: `tracebox observe SESSION --out {folder}` "
                "writes them"
            )
        entries = merge.read_jsonl(jsonl_path)
        md = _read(os.path.join(folder, "observations.md"))
        return Current(
            folder,
            merge.ordered(entries),
            render.counts(entries),
            md if md is not None else render.render(entries),
            _read(jsonl_path) or "",
        )
    return _from_harness_run(project, run)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(merge.MAX_ENTRIES_BYTES)
    except FileNotFoundError:
        return None


def _from_harness_run(project, run_id: str | None) -> Current:
    from ..harness.run import key
    from ..ui.data import harness_runs

    runs = harness_runs(project)
    run = next((r for r in runs if r["run"] == run_id), None) if run_id else next(iter(runs), None)
    if run is None:
        raise NotFound(
            f"no harness run {run_id} in the bucket"
            if run_id
            else "no observations yet: start the server with --observations DIR (the folder "
            "`tracebox observe --out DIR` writes), or run `tracebox harness run`"
        )
    gens = [g["generation"] for g in run.get("generations") or [] if "generation" in g]
    if not gens:
        raise NotFound(f"harness run {run['run']} has no finished generation yet")
    base = key(run["run"], f"gen-{max(gens)}")
    jsonl = _get(project, f"{base}/observations.jsonl") or ""
    entries = merge.ordered(merge.loads(jsonl))  # as ui.data.observations reads them
    by_fp = {e["fingerprint"]: e for e in entries}
    return Current(
        base,
        entries,
        render.counts(by_fp),
        _get(project, f"{base}/observations.md") or render.render(by_fp),
        jsonl,
    )


def _get(project, rel: str) -> str | None:
    try:
        return project.store.get(project.ctx.key(rel)).data.decode("utf-8", "replace")
    except NotFound:
        return None
