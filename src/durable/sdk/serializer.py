"""How values become checkpoint payloads and back.

The default is JSON through pydantic: pydantic models, dataclasses, datetime, UUID, Decimal and
bytes (base64, inside models and dataclasses too, whatever their own config says) encode
without help, and decode back to their own types when the code states the type (a step's
return annotation, a workflow's parameter annotations). Without an annotation a value decodes
to plain JSON data. Every value is passed through decode(encode(v)) even on first execution,
so a workflow sees the same thing whether it runs live or replays.

A custom `Serializer` (encryption, compression, another format) can be set per workflow or step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, is_dataclass
from typing import Any, Protocol

import pydantic_core
from pydantic import BaseModel, PydanticUndefinedAnnotation, PydanticUserError, TypeAdapter
from pydantic_core import CoreConfig, SchemaSerializer, SchemaValidator

from durable.errors import SerializationError


class Serializer(Protocol):
    def encode(self, value: Any) -> str: ...

    def decode(self, data: str, type_hint: Any = Any) -> Any: ...


_BASE64: CoreConfig = {"ser_json_bytes": "base64", "val_json_bytes": "base64"}


@dataclass(frozen=True, slots=True)
class _Codec:
    """pydantic's validator and serializer for one type, with bytes as base64 everywhere in
    it (`_base64_bytes`)."""

    validator: SchemaValidator
    serializer: SchemaSerializer


_codecs: dict[Any, _Codec] = {}


def _codec(type_hint: Any) -> _Codec:
    try:
        return _codecs[type_hint]
    except KeyError:
        pass
    except TypeError:  # unhashable hint: build one each time
        return _new_codec(type_hint)
    codec = _codecs[type_hint] = _new_codec(type_hint)
    return codec


def _new_codec(type_hint: Any) -> _Codec:
    schema = _base64_bytes(TypeAdapter(type_hint).core_schema)
    return _Codec(SchemaValidator(schema, _BASE64), SchemaSerializer(schema, _BASE64))


def _base64_bytes(schema: Any) -> Any:
    """A copy of `schema` (a pydantic core schema) that reads and writes bytes as base64 in
    every model and dataclass in it, whatever their own config says, so that any bytes, not
    only UTF-8 ones, round-trip the same way wherever they sit.

    A model's config is its own, not inherited from an outer one, and pydantic-core builds a
    model's part of a schema by reusing the validator and serializer the class already has
    (the class's `__dict__` holds them), config included. So each model and dataclass node
    gets the config and a stand-in class (`_stand_in`) that has none prebuilt, and the node
    is built from the schema itself: the same fields, validators and serializers."""
    if isinstance(schema, list):
        return [_base64_bytes(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: value if key in ("metadata", "default") else _base64_bytes(value)
           for key, value in schema.items()}
    if isinstance(out.get("config"), dict):
        out["config"] = {**out["config"], **_BASE64}
    if out.get("type") in ("model", "dataclass"):
        out["cls"] = _stand_in(out["cls"])
    return out


def _stand_in(cls: type) -> type:
    """A class pydantic-core takes for `cls`: what it creates is a `cls` (pydantic-core makes
    an instance through the class's `__new__` and then fills in its fields), and a `cls`
    passes its instance checks (in a union, a member whose check fails is serialized by
    inference, with the class's own config), yet it has no prebuilt validator or serializer."""
    class Of(type):
        def __instancecheck__(self, instance: Any) -> bool:
            return isinstance(instance, cls)

    def new(_: type) -> Any:
        return object.__new__(cls)
    return Of(cls.__name__, (), {"__new__": new, "__qualname__": cls.__qualname__,
                                 "__module__": cls.__module__})


_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _jsonable(value: Any) -> Any:
    """`value` with each model and dataclass in it written as JSON data by its `_codec`:
    pydantic serializing a value whose type it infers (all an encoder is given) writes a model
    with the model's own serializer, bytes as UTF-8 text, which fails for other bytes and
    would not match what decoding expects."""
    if isinstance(value, BaseModel) or (is_dataclass(value) and not isinstance(value, type)):
        try:
            codec = _codec(type(value))
        except (PydanticUserError, PydanticUndefinedAnnotation):  # no schema: inferred
            return value
        return codec.serializer.to_python(value, mode="json", round_trip=True)
    if isinstance(value, dict):
        if _SCALARS.issuperset(map(type, value.values())):  # at C speed: no walk needed
            return value
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if _SCALARS.issuperset(map(type, value)):
            return value
        return [_jsonable(item) for item in value]
    return value



class JsonSerializer:
    def encode(self, value: Any) -> str:
        try:
            return pydantic_core.to_json(_jsonable(value), bytes_mode="base64").decode()
        except pydantic_core.PydanticSerializationError as e:
            raise SerializationError(
                f"a value of type {type(value).__qualname__} cannot be encoded as JSON ({e}); "
                "use JSON data, a dataclass or a pydantic model, or pass a custom serializer"
            ) from None

    def decode(self, data: str, type_hint: Any = Any) -> Any:
        if type_hint is Any or type_hint is None:
            return json.loads(data)
        try:
            return _codec(type_hint).validator.validate_json(data)
        except Exception as e:
            raise SerializationError(
                f"cannot decode stored value as {type_hint!r}: {e}") from None


DEFAULT_SERIALIZER: Serializer = JsonSerializer()
