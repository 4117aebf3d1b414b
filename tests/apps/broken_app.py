"""A target whose import fails, as a module with a bug or a missing setting does."""

raise RuntimeError("DATABASE_URL is not set")
