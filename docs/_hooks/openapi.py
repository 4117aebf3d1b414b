"""MkDocs hook: the HTTP API reference, written at build time from the server's own OpenAPI
document (the FastAPI app of `durable server`), so the page can never describe routes that
are gone or miss new ones. The app is only built, never started: no database is opened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "reference/http.md"
METHODS = ("get", "post", "put", "patch", "delete")

INTRO = """# HTTP API reference

Generated from the OpenAPI document of `durable server` (also served live at
`/openapi.json`, with an interactive explorer at `/docs`). Every failure is
`{"error": {"code": ..., "message": ...}}`: 400 for bad input (the message says what to
change), 401 without the server's token, 404 for an unknown run or callback, 409 for a run
in the wrong state or an id another run holds. The AWS durable-execution routes
(`/2025-12-01/...`, `/2015-03-31/...`) are AWS's own contract: see
[Running AWS durable functions on Durable](../guides/aws-on-durable.md).
"""


def openapi() -> dict[str, Any]:
    from durable.server.app import create_app

    document: dict[str, Any] = create_app("sqlite:///never-opened.db").openapi()
    return document


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return f"`{schema.get('type', 'any')}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _operation(path: str, method: str, op: dict[str, Any]) -> Iterator[str]:
    yield f"### `{method.upper()} {path}`"
    yield ""
    if op.get("summary"):
        yield f"**{op['summary']}**"
        yield ""
    if op.get("description"):
        yield op["description"].strip()
        yield ""
    params = op.get("parameters", [])
    if params:
        yield "| parameter | in | type | required | description |"
        yield "|---|---|---|---|---|"
        for p in params:
            yield (f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
                   f"{'yes' if p.get('required') else 'no'} | "
                   f"{_cell(p.get('description', ''))} |")
        yield ""
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        yield f"Body ({media}): {_type(content.get('schema', {}))}"
        yield ""
    responses = op.get("responses", {})
    if responses:
        yield "Responses: " + ", ".join(
            f"{code} {_cell(r.get('description', ''))}" for code, r in sorted(responses.items()))
        yield ""


def _schema(name: str, schema: dict[str, Any]) -> Iterator[str]:
    yield f"### `{name}`"
    yield ""
    if schema.get("description"):
        yield _cell(schema["description"])
        yield ""
    props = schema.get("properties", {})
    if props:
        required = set(schema.get("required", []))
        yield "| field | type | required | description |"
        yield "|---|---|---|---|"
        for field, spec in props.items():
            yield (f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} | "
                   f"{_cell(spec.get('description', ''))} |")
        yield ""
    elif "enum" in schema:
        yield "One of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]) + "."
        yield ""


def render(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                tag = (item[method].get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, item[method]))
    lines = [INTRO, f"OpenAPI {document.get('openapi', '')}, "
             f"{document['info']['title']} {document['info'].get('version', '')}.", ""]
    for tag in sorted(by_tag):
        lines += [f"## {tag}", ""]
        for path, method, op in by_tag[tag]:
            lines += _operation(path, method, op)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name in sorted(schemas):
            lines += _schema(name, schemas[name])
    return "\n".join(lines) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, PAGE, content=render(openapi())))
    return files
