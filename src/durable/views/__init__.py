"""Views of runs that the CLI and the server share: JSON shapes (jsonio) and the wording of a
run's history and pending waits (timeline)."""
