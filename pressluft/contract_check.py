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
    problems.extend(_undeclared_answers(document))
    return problems


_KEY = "#/components/parameters/IdempotencyKey"


def _answers_owed(
    item: dict[str, Any], op: dict[str, Any], default_security: list[Any]
) -> list[tuple[str, tuple[str, ...]]]:
    """Statuses an operation can answer whatever it does, and why: schemathesis finds
    an undeclared one only by chance, so the file is checked for them."""
    owed: list[tuple[str, tuple[str, ...]]] = []
    if op.get("security", default_security):
        # the credential lookup reads the database, which may be unable to answer
        owed.append(("needs credentials", ("503",)))
    params = [*(item.get("parameters") or ()), *(op.get("parameters") or ())]
    if _KEY in {p.get("$ref") for p in params if isinstance(p, dict)}:
        # the header given twice (400), the key reused with another request (422)
        owed.append(("takes Idempotency-Key", ("400", "422")))
    if "requestBody" in op:
        # the middleware refuses a body too large (413) or not JSON (415) first
        owed.append(("takes a body", ("413", "415")))
    return owed


def _undeclared_answers(document: dict[str, Any]) -> list[str]:
    problems = []
    for path, item in (document.get("paths") or {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            declared = {str(code) for code in op["responses"]}
            for why, answers in _answers_owed(item, op, document.get("security") or []):
                missing = [code for code in answers if code not in declared]
                if missing:
                    problems.append(
                        f"{method.upper()} {path} {why} but does not declare {' or '.join(missing)}"
                    )
    return problems
