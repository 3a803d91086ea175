"""A capability is a folder and one line in the feature list: a toy one proves it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import get
from litestar.di import NamedDependency

from pressluft.app import create_asgi
from pressluft.clock import FrozenClock
from pressluft.config import Config
from pressluft.db import WriteTx
from pressluft.db.migrate import latest_version
from pressluft.events import Meta
from pressluft.events.projection import Envelope, Projector
from pressluft.events.types import Event, event_classes
from pressluft.feature import Feature, Kernel, Parts
from pressluft.features import FEATURES, MIGRATIONS
from pressluft.jobs.workers import JobWorker, WorkerPort, enqueue_job
from pressluft.runtime import Runtime


class ToyPinged(Event, frozen=True, kw_only=True, tag="toy.pinged"):
    ping_id: str
    note: str


def _pinged(conn: sqlite3.Connection, e: ToyPinged, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO toy_pings (id, note, pinged_at) VALUES (?, ?, ?)",
        (e.ping_id, e.note, env.recorded_at),
    )


TOY_PROJECTOR = Projector("toy", ("toy_pings",), {ToyPinged: _pinged})


class Toys:
    """The toy capability's service: what its route calls."""

    def __init__(self, kernel: Kernel) -> None:
        self._db = kernel.db

    async def pings(self) -> int:
        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM toy_pings").fetchone()[0])

        return await self._db.read(count)


@get("/toy/pings", opt={"public": True})
async def toy_pings(toys: NamedDependency[Toys]) -> dict[str, int]:
    return {"pings": await toys.pings()}


class PingArgs(msgspec.Struct, frozen=True, kw_only=True):
    note: str


class ToyPing(JobWorker[PingArgs]):
    kind = "toy_ping"
    args = PingArgs
    timeout_seconds = 60

    async def work(self, ctx: WorkerPort, args: PingArgs) -> None:
        await ctx.record(f"toy:{ctx.job_id}", [ToyPinged(ping_id=ctx.job_id, note=args.note)])
        ctx.log("pinged")


def _assemble(kernel: Kernel) -> Parts:
    return Parts(workers=[ToyPing()], services={"toys": Toys(kernel)})


def _toy_feature(migrations: Path) -> Feature:
    return Feature(
        name="toy",
        events=(ToyPinged,),
        projectors=(TOY_PROJECTOR,),
        routes=(toy_pings,),
        migrations=migrations,
        assemble=_assemble,
    )


@pytest.mark.spec("GOV-7")
async def test_a_capability_joins_by_the_feature_list_alone(
    tmp_path: Path, config: Config, clock: FrozenClock
) -> None:
    migrations = tmp_path / "toy-migrations"
    migrations.mkdir()
    number = latest_version(MIGRATIONS) + 1
    (migrations / f"{number:04d}_toy_pings.sql").write_text(
        "CREATE TABLE toy_pings (id TEXT PRIMARY KEY, note TEXT NOT NULL,"
        " pinged_at TEXT NOT NULL) STRICT;\n"
    )
    assert "toy.pinged" in event_classes()
    runtime = Runtime(config, clock, features=(*FEATURES, _toy_feature(migrations)))
    await runtime.start()
    try:

        def queue(tx: WriteTx) -> str:
            return enqueue_job(tx, ToyPing, PingArgs(note="hello"), Meta(actor="test:toy"))

        job_id = await runtime.db.write(queue)

        def status(conn: sqlite3.Connection) -> str:
            return str(
                conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            )

        for _ in range(200):
            if await runtime.db.read(status) == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert await runtime.db.read(status) == "succeeded"

        transport = httpx.ASGITransport(app=create_asgi(runtime), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            response = await http.get("/toy/pings")
        assert response.status_code == 200
        assert response.json() == {"pings": 1}

        def note(conn: sqlite3.Connection) -> str:
            return str(conn.execute("SELECT note FROM toy_pings").fetchone()[0])

        assert await runtime.db.read(note) == "hello"
    finally:
        await runtime.stop()
