"""CLI: ``tracebox init`` — create/attach a project, probe the backend, write config."""

from __future__ import annotations

import click

from ._common import emit_json, json_option


@click.command("init")
@click.option(
    "--bucket",
    "bucket_opt",
    metavar="URL",
    help="Bucket URL [default: ./.tracebox-bucket, a local folder].",
)
@click.option("--project", "project_opt", help="Project name [default: this folder's name].")
@click.option("--agent", "agent_opt", help="Default agent id written to the config.")
@click.option(
    "--allow-racy-claims",
    is_flag=True,
    help="Enable claims even if the backend cannot do conditional writes.",
)
@click.option("--no-config", is_flag=True, help="Do not write .tracebox.toml.")
@click.option("--public-ok", is_flag=True, help="Hugging Face: accept a public bucket.")
@json_option
@click.pass_context
def init_cmd(
    ctx, bucket_opt, project_opt, agent_opt, allow_racy_claims, no_config, public_ok, as_json
):
    """Create a project in a bucket and write .tracebox.toml here (never credentials).

    Probes the backend: conditional create and compare-and-swap must demonstrably
    work, or claims are refused unless --allow-racy-claims.
    """
    import os

    from ..project import init_project

    o = ctx.find_root().obj or {}
    bucket = bucket_opt or o.get("bucket") or "./.tracebox-bucket"
    project = project_opt or o.get("project") or _default_project()
    agent = agent_opt or o.get("agent")
    s3 = {k: o[k] for k in ("endpoint", "region", "profile") if o.get(k)}
    info = init_project(
        bucket,
        project,
        agent,
        allow_racy_claims=allow_racy_claims,
        write_config_to=None if no_config else os.getcwd(),
        s3=s3,
        public_ok=public_ok,
    )
    if as_json:
        return emit_json(info)
    verb = "created" if info["created"] else "attached to existing"
    click.echo(f"{verb} project {info['project']} in {info['bucket']} as {info['agent']}")
    pr = info["probe"]
    if pr["create_if_absent"] and pr["compare_and_swap"]:
        click.echo("conditional writes: verified (create-if-absent and compare-and-swap)")
    else:
        click.echo(f"conditional writes: NOT working ({pr['detail']})", err=True)
        if info["claims_enabled"]:
            click.echo(
                "claims are ENABLED anyway (--allow-racy-claims): two agents may both win a step",
                err=True,
            )
        else:
            click.echo(
                "claims are disabled on this bucket; pass --allow-racy-claims to accept races",
                err=True,
            )
    if info["config"]:
        click.echo(f"wrote {info['config']}")


def _default_project() -> str:
    import os
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(os.getcwd())).strip("-.")
    return name or "default"
