"""Strict decoding of JSON request bodies.

Litestar converts a handler's `data` with `msgspec.convert(..., strict=False)`,
which turns `"5"` into 5 and `"1e3"` into 1000.0 where the contract says a
number. The app installs `StrictBody` as its DTO: Litestar then hands it the
raw bytes of every non-empty body and passes what it returns to the handler
untouched, so each `data: Annotated[T, Body()]` is decoded once, strictly, by
`msgspec.json.decode(..., type=T)`. A body that does not fit `T` is a
`ValidationException` shaped like Litestar's own (the error handler renders
both the same way); one that is not JSON is 400 "not valid JSON". A key given
twice in one object is refused too (JSON parsers disagree on which one counts;
msgspec takes the last). An empty body never reaches the DTO: the signature
model still reports it missing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from functools import cache
from typing import Any

import msgspec
from litestar.dto import AbstractDTO, DTOFieldDefinition
from litestar.enums import RequestEncodingType
from litestar.exceptions import ImproperlyConfiguredException, ValidationException
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from pressluft.errors import BadRequest

__all__ = ["StrictBody"]

#: Where msgspec says an error is: "... - at `$.lines`", "... - at `key` in `$.x`".
_AT = re.compile(r"`\$\.(.+)`$")


@cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


def _invalid(exc: msgspec.ValidationError, method: str, path: str) -> ValidationException:
    """The error as Litestar words it: `key` is the field ("data" for the body itself)."""
    text = str(exc)
    at = _AT.search(text)
    message, key = text.split(" - ", 1)[0], at[1] if at else "data"
    return ValidationException(
        detail=f"Validation failed for {method} {path}",
        extra=[{"message": message, "key": key, "source": "body"}],
    )


class _Repeated(dict[str, Any]):
    """An object of the body in which `key` was given more than once."""

    key = ""


def _repeated_at(value: Any, path: str = "") -> str | None:
    """The dotted path of the first key given twice, or None."""
    if isinstance(value, _Repeated):
        return path + value.key
    if isinstance(value, dict):
        children: Any = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for name, child in children:
        found = _repeated_at(child, f"{path}{name}.")
        if found is not None:
            return found
    return None


def _refuse_duplicate_keys(value: bytes, method: str, path: str) -> None:
    """A body msgspec accepted, parsed again to find a key given twice in an object.
    Objects are built inside out, so a repeat is marked where it is and, only if
    there was one, found top-down for its path."""
    repeats = False

    def mark(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeats
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        repeats = True
        seen: set[str] = set()
        marked = _Repeated(obj)
        for key, _ in pairs:
            if key in seen:
                marked.key = key
                break
            seen.add(key)
        return marked

    tree = json.loads(value, object_pairs_hook=mark)
    at = _repeated_at(tree) if repeats else None
    if at is not None:
        raise ValidationException(
            detail=f"Validation failed for {method} {path}",
            extra=[{"message": "key given more than once", "key": at, "source": "body"}],
        )


class StrictBody(AbstractDTO[Any]):
    """The app's data DTO: decodes JSON bodies strictly; never encodes responses."""

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: object = None,
    ) -> None:
        kwarg = field_definition.kwarg_definition
        if isinstance(kwarg, BodyKwarg) and kwarg.media_type != RequestEncodingType.JSON:
            raise ImproperlyConfiguredException(f"{handler_id}: only JSON bodies are decoded")
        _decoder(field_definition.annotation)  # a type msgspec cannot decode fails here

    @classmethod
    def is_supported_model_type_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    def decode_bytes(self, value: bytes) -> Any:
        connection = self.asgi_connection
        data_field = connection.route_handler.parsed_data_field
        assert data_field is not None  # Litestar calls a data DTO only for a `data` parameter
        method = str(connection.scope.get("method", ""))
        try:
            decoded = _decoder(data_field.annotation).decode(value)
        except msgspec.ValidationError as exc:
            raise _invalid(exc, method, connection.url.path) from exc
        except msgspec.DecodeError as exc:
            raise BadRequest("the request body is not valid JSON") from exc
        _refuse_duplicate_keys(value, method, connection.url.path)
        return decoded

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        raise ImproperlyConfiguredException("only JSON bodies are decoded")
