"""``python -m tracebox`` runs the CLI."""

from .cli import main

main()
