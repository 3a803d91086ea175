"""A STAND-IN for Cloudflare's API v4 (not Cloudflare: its API is not reachable from
tests), on a loopback port, implementing only what `CloudflareProvider` calls:
`GET /zones?name=`, `GET|POST /zones/{id}/dns_records`, `DELETE
/zones/{id}/dns_records/{record}`, with `Authorization: Bearer <token>` checked and
Cloudflare's envelope (`success`, `errors`, `result`).

TXT records created here are mirrored into a real DNS server (`BindServer`) when
one is given, so propagation checks and ACME validation see them as they would
see Cloudflare's name servers.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.bind import BindServer


class CloudflareStandIn:
    def __init__(self, token: str, zones: dict[str, str], bind: BindServer | None = None) -> None:
        """`zones`: zone name → zone id."""
        self.token = token
        self.zones = zones
        self.bind = bind
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self._next = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/client/v4"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> CloudflareStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                api.requests.append((method, url.path))
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._reply(
                        403,
                        {
                            "success": False,
                            "errors": [{"code": 9109, "message": "Invalid access token"}],
                        },
                    )
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.removeprefix("/client/v4").strip("/").split("/")
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with api._lock:
                    status, result = api._route(method, parts, query, body)
                if status >= 400:
                    self._reply(status, {"success": False, "errors": [{"message": result}]})
                else:
                    self._reply(status, {"success": True, "errors": [], "result": result})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if parts == ["zones"] and method == "GET":
            name = query.get("name")
            return 200, [
                {"id": zid, "name": zname, "name_servers": []}
                for zname, zid in self.zones.items()
                if name is None or name == zname
            ]
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            zone_id = parts[1]
            if zone_id not in self.zones.values():
                return 404, "zone not found"
            if len(parts) == 3 and method == "GET":
                return 200, [
                    r
                    for r in self.records.values()
                    if r["zone_id"] == zone_id
                    and all(
                        r.get(k) == v for k, v in query.items() if k in ("type", "name", "content")
                    )
                ]
            if len(parts) == 3 and method == "POST":
                if not body or body.get("type") != "TXT" or not body.get("name"):
                    return 400, "only TXT records with a name"
                self._next += 1
                record = {"id": f"rec{self._next}", "zone_id": zone_id, **body}
                self.records[record["id"]] = record
                if self.bind is not None:
                    self.bind.add(body["name"] + ".", "TXT", f'"{body["content"]}"')
                return 200, record
            if len(parts) == 4 and method == "DELETE":
                record = self.records.pop(parts[3], None)
                if record is None:
                    return 404, "record not found"
                if self.bind is not None:
                    self.bind.discard(record["name"] + ".", "TXT", f'"{record["content"]}"')
                return 200, {"id": record["id"]}
        return 404, f"no route {method} /{'/'.join(parts)}"
