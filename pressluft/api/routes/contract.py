"""`/api/openapi.yaml` (the contract itself), `/api/openapi.json` (the same document as
JSON, for tools that read only JSON) and `/api/docs` (a page rendered from it)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
import yaml
from litestar import Response, get
from litestar.response import Template

from pressluft.api.contract import contract_bytes, load_contract

__all__ = ["CONTRACT_ROUTES"]


@get("/api/openapi.yaml", operation_id="getOpenApiDocument", tags=["operations"])
async def openapi_document() -> Response[bytes]:
    return Response(contract_bytes(), media_type="application/yaml")


@lru_cache(maxsize=1)
def _contract_json() -> bytes:
    return msgspec.json.encode(load_contract())


@get("/api/openapi.json", operation_id="getOpenApiDocumentJson", tags=["operations"])
async def openapi_document_json() -> Response[bytes]:
    return Response(_contract_json(), media_type="application/json")


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for path, item in document.get("paths", {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            op = item.get(method)
            if op is None:
                continue
            ops.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "id": op.get("operationId"),
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tag": (op.get("tags") or ["other"])[0],
                    "parameters": op.get("parameters", []),
                    "body": yaml.safe_dump(op["requestBody"], sort_keys=False)
                    if "requestBody" in op
                    else None,
                    "responses": {
                        str(code): resp.get("description", "")
                        for code, resp in op.get("responses", {}).items()
                    },
                }
            )
    return ops


@get("/api/docs", operation_id="getApiDocs", tags=["operations"], media_type="text/html")
async def api_docs() -> Template:
    document = load_contract()
    schemas = {
        name: yaml.safe_dump(schema, sort_keys=False)
        for name, schema in document.get("components", {}).get("schemas", {}).items()
    }
    return Template(
        template_name="api_docs.html",
        context={
            "info": document.get("info", {}),
            "ops": _operations(document),
            "schemas": schemas,
        },
    )


CONTRACT_ROUTES = [openapi_document, openapi_document_json, api_docs]
