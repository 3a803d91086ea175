"""Every route of the app is protected by default, and protected as the contract declares."""

from __future__ import annotations

import re

import httpx
import pytest
from litestar import get

from pressluft.api.contract import load_contract
from pressluft.api.security import requirements
from pressluft.app import create_app, guard_request
from pressluft.runtime import Runtime
from tests.conftest import contract_client, make_token, make_user

#: Reachable without credentials (the issue's list, plus the login page and static files).
PUBLIC_OPERATIONS = {
    "login",
    "getHealth",
    "getOpenApiDocument",
    "getOpenApiDocumentJson",
    "getApiDocs",
}
PUBLIC_PAGES = {"/login"}
UUID = "00000000-0000-4000-8000-000000000000"


def _routes(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, operationId or None) for every handler of the app."""
    out = []
    for route in create_app(runtime).routes:
        path = re.sub(r"\{[^}]+\}", UUID, route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method in ("OPTIONS", "HEAD"):
                    continue
                operation = handler.operation_id if isinstance(handler.operation_id, str) else None
                out.append((method, path, operation))
        if path.startswith("/static"):
            out.append(("GET", "/static/app.css", None))
    return sorted(set(out))


@pytest.mark.spec("SEC-1")
async def test_every_route_without_credentials(runtime: Runtime) -> None:
    routes = _routes(runtime)
    assert len(routes) >= 20
    async with contract_client(runtime) as anon:
        for method, path, operation in routes:
            body = {} if method in ("POST", "PATCH") else None
            reply = await anon.request(method, path, json=body)
            label = f"{method} {path} ({operation})"
            if operation in PUBLIC_OPERATIONS or path in PUBLIC_PAGES or path.startswith("/static"):
                assert reply.status_code != 401, label
            elif operation is None:  # a dashboard page
                assert reply.status_code == 303, label
                assert reply.headers["location"].startswith("/login?next="), label
            else:
                assert reply.status_code == 401, label
                assert reply.json()["code"] == "unauthorized", label


@pytest.mark.spec("SEC-1", "TOK-2")
async def test_every_mutation_with_a_read_token_is_forbidden(runtime: Runtime) -> None:
    token = await make_token(runtime, ["read"])
    async with contract_client(runtime, {"Authorization": f"Bearer {token}"}) as reader:
        for method, path, operation in _routes(runtime):
            if method == "GET" or operation in PUBLIC_OPERATIONS:
                continue
            reply = await reader.request(method, path, json={})
            label = f"{method} {path} ({operation})"
            if operation == "logout":  # for dashboard sessions only
                assert reply.status_code == 401, label
            else:
                assert reply.status_code == 403, label
                assert reply.json()["code"] == "forbidden", label


@pytest.mark.spec("SEC-1")
async def test_a_viewer_session_reads_but_cannot_change(runtime: Runtime) -> None:
    await make_user(runtime, "viewer@example.com", "viewer password 123", role="viewer")
    async with contract_client(runtime, {"Origin": "http://127.0.0.1"}) as viewer:
        login = await viewer.post(
            "/api/login", json={"email": "viewer@example.com", "password": "viewer password 123"}
        )
        assert login.status_code == 200
        assert (await viewer.get("/api/settings")).status_code == 200
        assert (await viewer.get("/")).status_code == 200
        changed = await viewer.patch(
            "/api/settings", json={"control_plane_domain": "v.example.com"}
        )
        assert changed.status_code == 403


@pytest.mark.spec("SEC-2")
def test_requirements_come_from_the_contract() -> None:
    table = requirements()
    document = load_contract()
    operations = {
        op["operationId"]: op
        for item in document["paths"].values()
        for method, op in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    }
    assert set(table) == set(operations)
    assert {name for name, req in table.items() if req.public} == PUBLIC_OPERATIONS
    assert table["updateSettings"].token_scope == "admin"
    assert table["getSettings"].session_scope == "read"
    assert table["logout"].token_scope is None
    assert table["getCurrentToken"].session_scope is None
    # An operation without its own `security` takes the document's default: admin.
    undeclared = [name for name, op in operations.items() if "security" not in op]
    assert undeclared, "the default must be exercised"
    for name in undeclared:
        assert table[name].token_scope == "admin"
        assert table[name].session_scope == "admin"


@pytest.mark.spec("SEC-2")
async def test_a_handler_missing_from_the_contract_is_refused(runtime: Runtime) -> None:
    @get("/api/sneaky", operation_id="notInTheContract")
    async def sneaky() -> dict[str, str]:
        return {"secret": "data"}

    app = create_app(runtime)
    app.register(sneaky)
    token = await make_token(runtime, ["admin"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as raw:
        reply = await raw.get("/api/sneaky", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 403
    assert "not in the contract" in reply.json()["message"]


@pytest.mark.spec("SEC-1")
def test_every_handler_runs_the_one_request_guard(runtime: Runtime) -> None:
    """The guard is the app's before-request hook: a layer with its own hook would
    replace it (Litestar takes the closest), so none may have one."""
    handlers = [h for route in create_app(runtime).routes for h in route.route_handlers]
    assert len(handlers) >= 20
    for handler in handlers:
        assert handler.resolve_before_request() is guard_request, handler
        assert not handler.resolve_guards(), handler
