"""Integrations of Durable with other libraries, each behind its own extra: import the module
of the one you use (`durable.integrations.pydantic_ai`, `durable.integrations.llm`)."""
