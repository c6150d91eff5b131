"""The CLI's sub-commands that run pipeline stages (kept apart from argument parsing)."""
