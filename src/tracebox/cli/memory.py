"""CLI: ``tracebox memory set/get/list/delete/history`` — versioned shared JSON values."""

from __future__ import annotations

import click

from ._common import emit_json, json_option, open_project, short_time, table


@click.group("memory")
def memory_group():
    """Shared key-value memory: JSON values, every write versioned, CAS with --if-version."""


def _parse_value(text: str, as_string: bool):
    if as_string:
        return text
    import msgspec

    try:
        return msgspec.json.decode(text.encode("utf-8", "surrogateescape"))
    except (msgspec.DecodeError, UnicodeEncodeError):
        return text  # not JSON: store it as a string


@memory_group.command("set")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--string", "as_string", is_flag=True, help="Store VALUE as a string, not JSON.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    help="Read the value from a file ('-' for stdin).",
)
@click.option(
    "--if-version",
    type=int,
    metavar="N",
    help="Only write if the key is at version N (0: must not exist).",
)
@json_option
@click.pass_context
def memory_set(ctx, key, value, as_string, path, if_version, as_json):
    """Set KEY (dotted, e.g. build.status) to VALUE (JSON if it parses, else a string)."""
    if (value is None) == (path is None):
        raise click.UsageError("give exactly one of VALUE or --file")
    if path is not None:
        from ..errors import UsageError

        try:
            raw = click.open_file(path, "rb").read(2 << 20)
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not valid UTF-8 text") from None
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
    p = open_project(ctx)
    doc = p.memory.set(key, _parse_value(value, as_string), if_version=if_version)
    if as_json:
        return emit_json(doc)
    click.echo(f"{key} = version {doc['version']}")


@memory_group.command("get")
@click.argument("key")
@click.option("--meta", is_flag=True, help="Print version, writer and time too.")
@json_option
@click.pass_context
def memory_get(ctx, key, meta, as_json):
    """Print KEY's current value (exit 1 if absent)."""
    p = open_project(ctx)
    doc = p.memory.get(key)
    if as_json:
        return emit_json(doc if meta else doc["value"])
    v = doc["value"]
    if isinstance(v, str):
        click.echo(v)
    else:
        emit_json(v)
    if meta:
        click.echo(f"# version {doc['version']} by {doc['by']} at {doc['at']}", err=True)


@memory_group.command("list")
@click.argument("prefix", default="")
@json_option
@click.pass_context
def memory_list(ctx, prefix, as_json):
    """List keys (optionally under PREFIX) with version and writer."""
    p = open_project(ctx)
    rows = p.memory.list(prefix)
    if as_json:
        return emit_json(rows)
    for r in rows:
        r["when"] = short_time(r.get("at"))
    table(
        rows,
        [("key", "key"), ("version", "version"), ("by", "by"), ("when", "at"), ("value", "value")],
        empty="(no keys)",
    )


@memory_group.command("delete")
@click.argument("key")
@click.option("--if-version", type=int, metavar="N", help="Only delete if at version N.")
@json_option
@click.pass_context
def memory_delete(ctx, key, if_version, as_json):
    """Delete KEY (a versioned tombstone; history is kept)."""
    p = open_project(ctx)
    doc = p.memory.delete(key, if_version=if_version)
    if as_json:
        return emit_json(doc)
    click.echo(f"deleted {key} (version {doc['version']})")


@memory_group.command("history")
@click.argument("key")
@click.option("--limit", type=int, help="Only the last N versions.")
@json_option
@click.pass_context
def memory_history(ctx, key, limit, as_json):
    """Every version of KEY, oldest first."""
    p = open_project(ctx)
    rows = p.memory.history(key, limit=limit)
    if as_json:
        return emit_json(rows)
    for r in rows:
        r["when"] = short_time(r.get("at"))
        if r.get("deleted"):
            r["value"] = "(deleted)"
    table(
        rows,
        [("version", "version"), ("by", "by"), ("when", "at"), ("value", "value")],
        empty=f"(no history for {key})",
    )
