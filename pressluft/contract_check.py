"""`pressluft openapi check`: the contract is valid OpenAPI and matches the app's routes."""

from __future__ import annotations

from typing import Any

import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from pressluft.api.contract import app_operations, contract_operations, load_contract
from pressluft.app import create_app
from pressluft.config import resolve
from pressluft.runtime import Runtime

__all__ = ["check_contract"]


def check_contract() -> list[str]:
    """Problems with the contract file or between it and the app; empty when all is well."""
    problems: list[str] = []
    try:
        document = load_contract()
        validate(document)
    except (OSError, ValueError, yaml.YAMLError, OpenAPIValidationError) as exc:
        return [f"the contract is not a valid OpenAPI document: {exc}"]
    config, _ = resolve("dev", environ={})
    try:
        declared = contract_operations(document)
    except (KeyError, ValueError) as exc:
        return [f"the contract's operations cannot be read: {exc}"]
    actual = app_operations(create_app(Runtime(config)))
    for op in sorted(declared - actual):
        problems.append("in the contract, not in the app: {} {} ({}, {})".format(*op))
    for op in sorted(actual - declared):
        problems.append("in the app, not in the contract: {} {} ({}, {})".format(*op))
    problems.extend(_keyed_without_answers(document))
    problems.extend(_bodies_without_answers(document))
    return problems


# Any request body can be too large (413) or not JSON (415): the middleware
# answers so before the handler runs, for every operation that takes a body.
_BODY_ANSWERS = ("413", "415")


def _bodies_without_answers(document: dict[str, Any]) -> list[str]:
    problems = []
    for path, item in (document.get("paths") or {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "requestBody" not in op:
                continue
            missing = [c for c in _BODY_ANSWERS if c not in {str(k) for k in op["responses"]}]
            if missing:
                problems.append(
                    f"{method.upper()} {path} takes a body but does not declare "
                    + " or ".join(missing)
                )
    return problems


_KEY = "#/components/parameters/IdempotencyKey"
# A key-taking operation can answer 400 (the header given twice) and 422 (the key
# reused with another request) whatever else it does; schemathesis finds an
# undeclared one only by chance, so the file is checked for them here.
_KEYED_ANSWERS = ("400", "422")


def _keyed_without_answers(document: dict[str, Any]) -> list[str]:
    problems = []
    for path, item in (document.get("paths") or {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            params = [*(item.get("parameters") or ()), *(op.get("parameters") or ())]
            refs = {p.get("$ref") for p in params if isinstance(p, dict)}
            if _KEY not in refs:
                continue
            missing = [c for c in _KEYED_ANSWERS if c not in {str(k) for k in op["responses"]}]
            if missing:
                problems.append(
                    f"{method.upper()} {path} takes Idempotency-Key but does not declare "
                    + " or ".join(missing)
                )
    return problems
