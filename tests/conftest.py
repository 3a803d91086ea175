"""Shared fixtures: real SQLite files in a temp data dir, a frozen clock, a contract-checked client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from pressluft.app import create_asgi
from pressluft.clock import FrozenClock
from pressluft.config import Config, resolve
from pressluft.contexts.access.principals import UserView
from pressluft.contexts.access.tokens import TokenCreateRequest, create_token_command
from pressluft.contexts.access.users import create_user_command
from pressluft.events import Meta
from pressluft.runners.docker import DockerLab
from pressluft.runtime import Runtime
from tests.support.bind import BindServer
from tests.support.browser import page, shots  # noqa: F401 - the browser tier's fixtures
from tests.support.contract import ContractValidator
from tests.support.dockerd import PrivateDockerd, node_image
from tests.support.live import LiveSite, start_live_site, stop_live_site
from tests.support.pebble import Pebble
from tests.support.s3 import S3Server
from tests.support.sshd import free_port

_VALIDATOR = ContractValidator()


@pytest.fixture
def contract() -> ContractValidator:
    return _VALIDATOR


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def data_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    # A test may name it (indirect parametrization), e.g. to put a payload in its path.
    return tmp_path / str(getattr(request, "param", "data"))


@pytest.fixture
def config(data_dir: Path) -> Config:
    # In-process runtimes run in pytest's main thread: leave its CPU mask alone
    # (subprocesses started later would inherit it). Real daemons colocate.
    # `serve` mode: no first-run admin; tests create the principals they need.
    cfg, _ = resolve("serve", {"data_dir": str(data_dir), "cpu_affinity": "off"}, environ={})
    return cfg


@pytest.fixture
async def runtime(config: Config, clock: FrozenClock) -> AsyncIterator[Runtime]:
    rt = Runtime(config, clock)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery staple"
ORIGIN = "http://127.0.0.1"


async def make_user(
    runtime: Runtime, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD, role: str = "admin"
) -> UserView:
    password_hash = await runtime.hasher.hash(password)
    command = create_user_command(
        runtime.vault, email, password_hash, role, None, Meta(actor="test:fixture")
    )
    return await runtime.db.write(command)


async def make_token(runtime: Runtime, scopes: list[str], name: str = "test") -> str:
    request = TokenCreateRequest(name=name, scopes=scopes)  # type: ignore[arg-type]
    command = create_token_command(request, ["read", "write", "admin"], Meta(actor="test:fixture"))
    return (await runtime.db.write(command)).token


@asynccontextmanager
async def contract_client(
    runtime: Runtime, headers: dict[str, str] | None = None, address: str = "127.0.0.1"
) -> AsyncIterator[httpx.AsyncClient]:
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

    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(
        transport=transport,
        base_url=ORIGIN,
        headers=headers,
        event_hooks={"response": [validate]},
    ) as test_client:
        test_client.app_runtime = runtime  # type: ignore[attr-defined]
        yield test_client


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated with an admin API token."""
    token = await make_token(runtime, ["admin"], name="test-admin")
    async with contract_client(runtime, {"Authorization": f"Bearer {token}"}) as test_client:
        yield test_client


@pytest.fixture
async def anon(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """No credentials at all."""
    async with contract_client(runtime) as test_client:
        yield test_client


@pytest.fixture
async def session(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """Logged in to the dashboard as an admin (cookie), sending a same-origin Origin."""
    await make_user(runtime)
    async with contract_client(runtime, {"Origin": ORIGIN}) as test_client:
        reply = await test_client.post(
            "/api/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        yield test_client


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def cli_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESSLUFT_")}
    env["PRESSLUFT_DATA_DIR"] = str(data_dir)
    return env


# -- a private Docker engine -----------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[PrivateDockerd, str]]:
    """A private dockerd with the offline busybox test image (per test module)."""
    dockerd = PrivateDockerd().start()
    try:
        yield dockerd, dockerd.build_test_image()
    finally:
        dockerd.stop()


@pytest.fixture
def lab(engine: tuple[PrivateDockerd, str]) -> Iterator[DockerLab]:
    """Lab nodes on `engine`; every managed container is removed afterwards."""
    lab = DockerLab(engine[0].url)
    try:
        yield lab
    finally:
        for state in lab.managed():
            lab.destroy(state.node_id)
        lab.close()


@pytest.fixture(scope="module")
def image_engine() -> Iterator[tuple[PrivateDockerd, str]]:
    """A private dockerd with the node image (built, or found in its cache)."""
    dockerd = PrivateDockerd().start()
    try:
        yield dockerd, node_image(dockerd)
    finally:
        dockerd.stop()


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, bind_dns: BindServer) -> Iterator[LiveSite]:
    """One provisioned lab node with one WordPress site, for the whole session
    (tests/support/live.py): every module that needs a live site shares it. Its
    daemon gets certificates from its own pebble (HTTP-01 validated on the node's
    published port) and checks DNS at `bind_dns`."""
    site = start_live_site(tmp_path_factory.mktemp("live"), bind_dns)
    try:
        yield site
    finally:
        stop_live_site(site)


@pytest.fixture
def live_sites(live: LiveSite) -> Iterator[list[str]]:
    """The ids of sites a test makes on the live node (it appends them): deleted, with
    their environments, once the test has ended — passed or failed."""
    made: list[str] = []
    yield made
    live.delete_sites(*made)


@pytest.fixture
def live_environments(live: LiveSite) -> Iterator[list[str]]:
    """The ids of environments a test makes on the live node's sites (it appends them),
    e.g. a copy of the live site's: deleted once the test has ended — passed or failed."""
    made: list[str] = []
    yield made
    live.delete_environments(*made)


# -- an ACME CA and an authoritative DNS server (real: pebble and BIND) ----------


@pytest.fixture(scope="session")
def bind_dns() -> Iterator[BindServer]:
    """named on a loopback port, authoritative for `test.`, dynamic updates with its
    TSIG key (`key_name`, `key_secret`, `key_algorithm`); `set`/`add`/`remove` records."""
    server = BindServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pebble_factory(bind_dns: BindServer) -> Iterator[Callable[..., Pebble]]:
    """Starts pebbles resolving through `bind_dns`: `pebble_factory(http_port,
    validity_seconds=None)` (http_port: where HTTP-01 is validated, e.g. a lab node's
    published port); all are stopped at the end of the module."""
    started: list[Pebble] = []

    def start(http_port: int, validity_seconds: int | None = None) -> Pebble:
        pebble = Pebble(bind_dns.address, http_port, validity_seconds=validity_seconds)
        started.append(pebble)
        return pebble.start()

    try:
        yield start
    finally:
        for pebble in started:
            pebble.stop()


@pytest.fixture(scope="module")
def pebble_ca(pebble_factory: Callable[..., Pebble]) -> Pebble:
    """A pebble validating HTTP-01 on a free loopback port (`http_port`) the test
    serves tokens on; `directory_url` and `ca_bundle` for `AcmeDirectory`."""
    return pebble_factory(free_port())


# -- S3-compatible storage (real: moto_server) ------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto_server on a loopback port, checking credentials like S3 (`access_key_id`,
    `secret_access_key`); `create_bucket`, `target(bucket, prefix)`, `objects`,
    `corrupt_one_object`."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


#: Modules on a live site that run in the other process (`-m "not live"`), on a live
#: site of its own: that process has time to spare, the `live` one has none (CI's
#: 40 minutes). The backups' tests: restic, the S3 server and a drill's clone.
SECOND_LIVE_SITE = {
    "test_backup_node",
    "test_recovery_node",
    "test_backup_crash",
    # Its releases come from a restore (restic and the S3 server are here).
    "test_releases_node",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's live site are marked `live` (by the fixture they use):
    `make test` runs them in a second process beside the rest — but for the modules of
    `SECOND_LIVE_SITE`, which run with the rest on a live site of their own."""
    for item in items:
        module = getattr(getattr(item, "module", None), "__name__", "").rpartition(".")[2]
        if "live" in getattr(item, "fixturenames", ()) and module not in SECOND_LIVE_SITE:
            item.add_marker(pytest.mark.live)


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


# -- never touch the machine's real data dir -----------------------------------

_SYSTEM_DATA_DIR = Path("/var/lib/pressluft")
_SYSTEM_DATA_DIR_EXISTED = _SYSTEM_DATA_DIR.exists()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _SYSTEM_DATA_DIR_EXISTED and _SYSTEM_DATA_DIR.exists():
        raise pytest.UsageError(
            f"the tests created {_SYSTEM_DATA_DIR}: a test ran `serve` without its own data dir"
        )
