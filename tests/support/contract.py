"""Validates HTTP responses against `openapi/pressluft.yaml`.

Used by the `client` fixture as an httpx response hook, so every response the
suite receives is checked against the contract's schema for its operation and
status — no per-test code. Errors are also checked for the envelope shape and
for leaked internals (tracebacks, file paths).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import msgspec
import referencing
from referencing.jsonschema import DRAFT202012

from pressluft.api.contract import is_api_path, load_contract

BASE = "urn:pressluft:openapi"
LEAK_PATTERNS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r'File "[^"]+", line \d+'),
    re.compile(r"site-packages"),
    re.compile(r"/(?:home|root|work|usr|tmp)/[\w.-]+/"),
)


class ContractViolation(AssertionError):
    """A response does not match the contract."""


@dataclass
class _Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


@dataclass
class ContractValidator:
    document: dict[str, Any] = field(default_factory=load_contract)
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        resource = referencing.Resource.from_contents(
            self.document, default_specification=DRAFT202012
        )
        self._registry: referencing.Registry[Any] = referencing.Registry().with_resource(
            BASE, resource
        )
        self._ops: list[_Operation] = []
        for template, item in self.document["paths"].items():
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            for method, op in item.items():
                if method in ("get", "put", "post", "patch", "delete"):
                    self._ops.append(_Operation(method.upper(), template, re.compile(regex), op))

    # -- lookups -----------------------------------------------------------------

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            pointer = node["$ref"].lstrip("#/").split("/")
            target: Any = self.document
            for part in pointer:
                target = target[part]
            node = target
        return node

    def operation(self, method: str, path: str) -> _Operation | None:
        for op in self._ops:
            if op.method == method and op.pattern.match(path):
                return op
        return None

    def path_known(self, path: str) -> bool:
        return any(op.pattern.match(path) for op in self._ops)

    def validate_schema(self, instance: Any, ref: str) -> None:
        schema = {"$ref": f"{BASE}#{ref}"}
        validator = jsonschema.Draft202012Validator(
            schema, registry=self._registry, format_checker=jsonschema.FormatChecker()
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            raise ContractViolation(
                f"{ref}: {first.message} at {list(first.absolute_path)}; instance={instance!r:.500}"
            )

    # -- the check ---------------------------------------------------------------

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        if not is_api_path(path):
            return
        text = body.decode("utf-8", errors="replace")
        media = content_type.split(";")[0].strip()
        if status >= 400:
            for leak in LEAK_PATTERNS:
                if leak.search(text):
                    raise ContractViolation(
                        f"{method} {path} -> {status} leaks internals: {text:.300}"
                    )
            if media != "application/json":
                raise ContractViolation(f"error response is {media}, not JSON: {text:.200}")
            self.validate_schema(msgspec.json.decode(body), "/components/schemas/Error")
        op = self.operation(method, path)
        if op is None:
            # Unknown route or method: only the generic errors are possible.
            if status not in (404, 405):
                raise ContractViolation(f"{method} {path} is not in the contract (got {status})")
            return
        responses = op.spec["responses"]
        declared = responses.get(str(status))
        if declared is None:
            raise ContractViolation(
                f"{method} {op.template} returned {status}, which the contract does not declare "
                f"(declared: {sorted(responses)})"
            )
        self.seen.add((method, op.template, status))
        declared = self._resolve(declared)
        content = declared.get("content")
        if not content:
            return
        if media not in content:
            raise ContractViolation(
                f"{method} {op.template} -> {status} is {media}, contract says {sorted(content)}"
            )
        schema = content[media].get("schema", {})
        if media == "application/json":
            instance = msgspec.json.decode(body)
            if "$ref" in schema:
                self.validate_schema(instance, schema["$ref"].lstrip("#"))
            else:
                jsonschema.validate(instance, schema)
