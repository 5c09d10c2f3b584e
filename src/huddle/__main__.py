"""``python -m huddle`` runs the CLI."""

from .cli import main

main()
