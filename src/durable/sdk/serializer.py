"""How values become checkpoint payloads and back.

The default is JSON through pydantic: pydantic models, dataclasses, datetime, UUID, Decimal and
bytes (base64; inside a pydantic model, as the model's own config says: UTF-8 text unless it
sets `ser_json_bytes="base64"`) encode without help, and decode back to their own types when the
code states the type (a step's return annotation, a workflow's parameter annotations). Without an
annotation a value decodes to plain JSON data. Every value is passed through decode(encode(v))
even on first execution, so a workflow sees the same thing whether it runs live or replays.

A custom `Serializer` (encryption, compression, another format) can be set per workflow or step.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from durable.errors import SerializationError

if TYPE_CHECKING:
    from pydantic import BaseModel

# pydantic is imported where it is first used, not here: every `import durable` loads this module,
# and pydantic's import is the largest part of a serverless function's cold start. A function
# pays for pydantic_core at its first checkpoint and for pydantic's models only when it decodes
# a value to a stated type.


class Serializer(Protocol):
    def encode(self, value: Any) -> str: ...

    def decode(self, data: str, type_hint: Any = Any) -> Any: ...


_boxes: dict[Any, type[BaseModel]] = {}


def _box(type_hint: Any) -> type[BaseModel]:
    """A one-field model around `type_hint`, so our config (bytes as base64) reaches nested
    dataclasses too: pydantic refuses a config on a bare dataclass but lets a model's flow in."""
    try:
        return _boxes[type_hint]
    except KeyError:
        pass
    except TypeError:  # unhashable hint: build one each time
        return _new_box(type_hint)
    box = _boxes[type_hint] = _new_box(type_hint)
    return box


def _new_box(type_hint: Any) -> type[BaseModel]:
    from pydantic import ConfigDict, create_model

    return create_model("Box", __config__=ConfigDict(val_json_bytes="base64"), v=(type_hint, ...))


class JsonSerializer:
    def encode(self, value: Any) -> str:
        import pydantic_core

        try:
            return pydantic_core.to_json(value, bytes_mode="base64").decode()
        except pydantic_core.PydanticSerializationError as e:
            if "utf-8" in str(e).lower():  # a model's bytes, written as its config says
                raise SerializationError(
                    f"a value of type {type(value).__qualname__} holds bytes that are not "
                    f"UTF-8 inside a pydantic model ({e}): a model writes its bytes as its own "
                    "config says, UTF-8 text by default; give the model model_config = "
                    "ConfigDict(ser_json_bytes='base64', val_json_bytes='base64') to keep any "
                    "bytes") from None
            raise SerializationError(
                f"a value of type {type(value).__qualname__} cannot be encoded as JSON ({e}); "
                "use JSON data, a dataclass or a pydantic model, or pass a custom serializer"
            ) from None

    def decode(self, data: str, type_hint: Any = Any) -> Any:
        if type_hint is Any or type_hint is None:
            return json.loads(data)
        try:
            return _box(type_hint).model_validate_json(f'{{"v":{data}}}').v  # type: ignore[attr-defined]
        except Exception as e:
            raise SerializationError(
                f"cannot decode stored value as {type_hint!r}: {e}") from None


DEFAULT_SERIALIZER: Serializer = JsonSerializer()
