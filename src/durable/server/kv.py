"""The key-value store shared by runs (`Client.kv`) under /api/kv: list, read, set, delete.

A key may hold `/`: the routes take the rest of the path as the key."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from durable.errors import KeyNotFound
from durable.model.kv import KEY_MAX, KvEntry
from durable.server.deps import ServerDep
from durable.server.errors import ERROR_RESPONSES
from durable.server.schemas import Accepted, KvEntryOut, KvPage, KvSet
from durable.views.jsonio import checked_json

router = APIRouter(prefix="/api/kv", tags=["kv"], responses=ERROR_RESPONSES)

PAGE = 100


def entry_out(entry: KvEntry) -> KvEntryOut:
    return KvEntryOut(key=entry.key, value=json.loads(entry.value), version=entry.version,
                      updated_at=entry.updated_at)


@router.get("", response_model=KvPage)
def list_keys(state: ServerDep,
              prefix: Annotated[str, Query(max_length=KEY_MAX)] = "",
              after: Annotated[str | None, Query(max_length=KEY_MAX)] = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = PAGE) -> KvPage:
    """The keys that have a value, in key order, a page at a time."""
    entries = state.client.kv.entries(prefix, after, limit)
    return KvPage(entries=[entry_out(e) for e in entries],
                  next_after=entries[-1].key if len(entries) == limit else None)


@router.get("/{key:path}", response_model=KvEntryOut)
def get_key(key: str, state: ServerDep) -> KvEntryOut:
    return entry_out(state.client.kv.entry(key))


@router.put("/{key:path}", response_model=KvEntryOut)
def set_key(key: str, body: KvSet, state: ServerDep) -> KvEntryOut:
    """Set the key to `value`, creating it if need be."""
    state.client.kv.set(key, checked_json(body.value, "value"))
    return entry_out(state.client.kv.entry(key))


@router.delete("/{key:path}", response_model=Accepted)
def delete_key(key: str, state: ServerDep) -> Accepted:
    if not state.client.kv.delete(key):
        raise KeyNotFound(key)
    return Accepted(message=f"deleted key {key!r}")
