"""Shared fixtures: real SQLite files in a temp data dir, a frozen clock, a contract-checked client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from pressluft.app import create_asgi
from pressluft.clock import FrozenClock
from pressluft.config import Config, resolve
from pressluft.runtime import Runtime
from tests.support.contract import ContractValidator

_VALIDATOR = ContractValidator()


@pytest.fixture
def contract() -> ContractValidator:
    return _VALIDATOR


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def config(data_dir: Path) -> Config:
    # In-process runtimes run in pytest's main thread: leave its CPU mask alone
    # (subprocesses started later would inherit it). Real daemons colocate.
    cfg, _ = resolve("dev", {"data_dir": str(data_dir), "cpu_affinity": "off"}, environ={})
    return cfg


@pytest.fixture
async def runtime(config: Config, clock: FrozenClock) -> AsyncIterator[Runtime]:
    rt = Runtime(config, clock)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client whose every response is validated against the contract.

    The app runs in the test's own event loop (httpx's ASGI transport), so tests
    may also reach into `client.app_runtime` safely.
    """
    app = create_asgi(runtime)

    async def validate(response: httpx.Response) -> None:
        await response.aread()
        _VALIDATOR.check(
            response.request.method,
            response.request.url.path,
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
        )

    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", event_hooks={"response": [validate]}
    ) as test_client:
        test_client.app_runtime = runtime  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESSLUFT_")}
    env["PRESSLUFT_DATA_DIR"] = str(data_dir)
    return env


# -- no silent skips -------------------------------------------------------------

_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A tier that cannot run must fail loudly: any skipped test fails the run."""
    if _SKIPPED and exitstatus == 0:
        print(f"\n{len(_SKIPPED)} test(s) were skipped; skips fail the run:")
        for nodeid in _SKIPPED:
            print(f"  {nodeid}")
        session.exitstatus = 1
