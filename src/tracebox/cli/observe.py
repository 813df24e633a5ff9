"""CLI: ``tracebox observe`` — what sessions ran into, as observations the next agent reads.

SESSION is a transcript path or a session id (as for ``export``); ``--run RUN`` (with
``--generation G``) takes the sessions a harness run captured in the bucket. Writes
``observations.jsonl`` and ``observations.md`` to ``--out`` (merged with what is already
there, so repeated runs accumulate), or prints the Markdown.
"""

from __future__ import annotations

import os

import click

from ._common import emit_json, json_option


@click.command("observe")
@click.argument("sessions", nargs=-1)
@click.option(
    "--run", "run_id", metavar="RUN", help="The sessions of this harness run (from the bucket)."
)
@click.option(
    "--generation", type=int, metavar="G", help="With --run: only generation G (and mark them so)."
)
@click.option("--harness", help="Parse SESSION files with this adapter.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Write observations.jsonl and .md here (merging with what is there).",
)
@click.option(
    "--budget",
    type=click.IntRange(500, 10_000_000),
    default=8000,
    show_default=True,
    help="Characters of observations.md.",
)
@click.option(
    "--llm",
    "use_llm",
    is_flag=True,
    help="Also re-rank and summarize with the model in [observe.llm] of .tracebox.toml.",
)
@json_option
@click.pass_context
def observe_cmd(ctx, sessions, run_id, generation, harness, out, budget, use_llm, as_json):
    """Extract prioritized observations ([important] errors, failed fixes, loops, …;
    [possible] files created, hypotheses, tests added; [informational] goal, tokens,
    time, dead ends) from SESSIONs, merged by fingerprint with evidence links."""
    from ..config import load_settings
    from ..errors import UsageError
    from ..observe import merge, render, rules

    if not sessions and not run_id:
        raise UsageError(
            "give one or more SESSIONs (transcript paths or session ids), or --run RUN"
        )
    from ..scrub import Scrubber
    from ..trace.export import scrub_session
    from .export import load_session

    # observations end up in prompts and the bucket: they come from scrubbed sessions
    # (a run's, from the bucket, were scrubbed when they were captured)
    settings = load_settings()
    scrub = Scrubber(config=settings.raw.get("scrub")).scrub_text
    trees = [scrub_session(load_session(s, harness), scrub) for s in sessions]
    if run_id:
        from ..harness.run import run_sessions
        from ._common import open_project

        trees += run_sessions(open_project(ctx, "observe"), run_id, generation)
    found = [o for t in trees for o in rules.observe_session(t)]
    entries = merge.read_jsonl(os.path.join(out, "observations.jsonl")) if out else {}
    entries = merge.merge(found, into=entries, generation=generation)
    summary = None
    if use_llm:
        from ..observe import llm

        entries, summary = llm.rerank(entries, settings.raw.get("observe", {}).get("llm"))
    md = render.render(entries, budget=budget, summary=summary)
    if out:
        os.makedirs(out, exist_ok=True)
        merge.write_jsonl(os.path.join(out, "observations.jsonl"), entries)
        with open(os.path.join(out, "observations.md"), "w", encoding="utf-8") as f:
            f.write(md)
    if as_json:
        return emit_json(
            {
                "sessions": len(trees),
                "entries": merge.ordered(entries),
                "counts": render.counts(entries),
            }
        )
    if out:
        c = render.counts(entries)
        click.echo(
            f"{len(trees)} session(s): {c['important']} important, {c['possible']} possible, "
            f"{c['informational']} informational -> {out}/observations.md"
        )
    else:
        click.echo(md)
