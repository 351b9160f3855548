"""Subcommands of the ``digiplat`` CLI, one module each (see app/cli.py)."""
