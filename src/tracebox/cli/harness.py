"""CLI: ``tracebox harness run|report|list`` — generations of agents that learn from each other."""

from __future__ import annotations

import os

import click

from ._common import GROUP_SETTINGS, emit_json, json_option, open_project


@click.group("harness", context_settings=GROUP_SETTINGS)
def harness_group():
    """Run generations of agent variants; each generation reads what the last one learned.

    \b
    tracebox harness run HARNESS.toml            # docs/harness.md has a complete example
    tracebox harness run HARNESS.toml --executor ray
    tracebox harness report RUN --out report/    # report.md + report.html
    tracebox harness list
    """


@harness_group.command("run")
@click.argument("harness_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option(
    "--no-observations",
    is_flag=True,
    help="Do not give observations to later generations (an ablation).",
)
@click.option("--generations", type=click.IntRange(1, 1000), help="Override [run] generations.")
@json_option
@click.pass_context
def run_cmd(ctx, harness_file, executor, no_observations, generations, as_json):
    """Run HARNESS_FILE: every generation's variants, the validator, the observer, the report."""
    import dataclasses
    import sys

    from ..harness import config, run

    cfg = config.load(harness_file)
    if generations:
        cfg = dataclasses.replace(cfg, generations=generations)
    p = open_project(ctx, "harness run")
    quiet = as_json

    def progress(ev: dict) -> None:
        if quiet:
            return
        if ev["type"] == "generation.start":
            click.echo(f"generation {ev['generation']}: {ev['variants']} variant(s)", err=True)
        elif ev["type"] == "variant.end":
            what = (
                "solved"
                if ev.get("solved")
                else (f"stopped ({ev['stopped']})" if ev.get("stopped") else "failed")
            )
            click.echo(
                f"  {ev['variant']}: {what} in {ev.get('seconds')} s, {ev.get('calls', 0)} model calls",
                err=True,
            )
        elif ev["type"] == "generation.end":
            o = ev["observations"]
            click.echo(
                f"  -> solved {ev['solved']}/{ev['variants']}, stopped {ev['stopped']}; observations {o['important']} important, {o['possible']} possible",
                err=True,
            )
        sys.stderr.flush()

    summary = run.run(
        cfg, p, executor=executor, use_observations=not no_observations, on_progress=progress
    )
    if as_json:
        return emit_json(summary)
    click.echo(
        f"run {summary['run']}: "
        + ", ".join(
            f"gen {g['generation']} solved {g['solved']}/{g['variants']}"
            for g in summary["generations"]
        )
    )
    click.echo(
        f"report: tracebox harness report {summary['run']} --out report/   (stored under harness/{summary['run']}/)"
    )


@harness_group.command("report")
@click.argument("run_id")
@click.option(
    "--out", type=click.Path(file_okay=False), help="Also write report.md and report.html here."
)
@click.pass_context
def report_cmd(ctx, run_id, out):
    """Render RUN's report again (report.md + report.html in the bucket, and in --out)."""
    from ..harness.report import write_report

    r = write_report(open_project(ctx, "harness report"), run_id)
    if out:
        os.makedirs(out, exist_ok=True)
        for name, data in (("report.md", r["md"]), ("report.html", r["html"])):
            with open(os.path.join(out, name), "w", encoding="utf-8") as f:
                f.write(data)
        click.echo(f"wrote {out}/report.md and {out}/report.html")
    else:
        click.echo(r["md"])


@harness_group.command("list")
@json_option
@click.pass_context
def list_cmd(ctx, as_json):
    """The harness runs in this project."""
    from ..harness.run import list_runs

    runs = list_runs(open_project(ctx, "harness list"))
    if as_json:
        return emit_json(runs)
    for r in runs:
        click.echo(r)
