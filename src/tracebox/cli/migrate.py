"""CLI: ``tracebox import tracecraft`` (placeholder until the importer lands)."""

import click


@click.group("import")
def import_group():
    """Import runs recorded by other tools."""
