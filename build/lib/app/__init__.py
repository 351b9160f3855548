"""User-facing layer: the Dash demonstrator (``python -m app``) and the ``digiplat`` CLI.

Kept light on purpose: ``import app`` must not import Dash, so the CLI starts fast.
"""
