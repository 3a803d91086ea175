"""The `pressluft` command line.

    pressluft dev | serve        run the daemon (zero-config dev mode / production mode)
    pressluft config             show the effective configuration and where each value came from
    pressluft migrate            bring the database to this code's schema
    pressluft replay [--verify]  rebuild projections from the event log (or diff a rebuild)
    pressluft events tail|verify read the event log / check its hash chain
    pressluft openapi check      compare the contract with the app's routes
    pressluft doctor             check this machine and data dir
    pressluft admin create|reset-password   operator accounts
    pressluft service install|uninstall     the systemd service of `pressluft serve`

Exit codes: 0 success; 1 a check or verification found a problem; 2 bad usage or
configuration; 3 the command could not run (data dir locked, no database, …).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import msgspec
import uvloop

from pressluft import __version__
from pressluft.clock import SystemClock, format_ts
from pressluft.config import SETTINGS, Config, ConfigError, Mode, resolve, settings_markdown
from pressluft.logs import setup_logging
from pressluft.runners.images import (
    RELEASES,
    ImageInputs,
    build_tarball,
    image_tag,
    import_tarball,
)

__all__ = ["main"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_CANNOT_RUN = 0, 1, 2, 3


def _fail(message: str, code: int = EXIT_CANNOT_RUN) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per entry of the settings table."""
    for setting in reversed(SETTINGS):
        described = f"{setting.help} [env {setting.env}"
        if setting.default:
            described += f"; default {setting.default_for('serve')!r}"
        if setting.dev_default is not None:
            described += f", dev {setting.dev_default!r}"
        described += "]"
        if setting.flag:
            option = click.option(
                setting.option, setting.name, is_flag=True, default=None, help=described
            )
        else:
            option = click.option(
                setting.option, setting.name, default=None, metavar=setting.metavar, help=described
            )
        func = option(func)
    return func


def _resolve(mode: Mode, options: dict[str, Any]) -> Config:
    try:
        config, _ = resolve(mode, {k: None if v is None else str(v) for k, v in options.items()})
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    return config


def _tool_data_dir(data_dir: str | None) -> Path:
    """Data dir for maintenance commands: option, env, ./.pressluft if present, else serve's."""
    if data_dir:
        return Path(data_dir).expanduser().resolve()
    if os.environ.get("PRESSLUFT_DATA_DIR"):
        return Path(os.environ["PRESSLUFT_DATA_DIR"]).expanduser().resolve()
    local = Path(".pressluft")
    try:
        if local.is_dir():
            return local.resolve()
    except PermissionError:  # e.g. `runuser -u pressluft` in root's home
        pass
    return Path("/var/lib/pressluft")


data_dir_option = click.option(
    "--data-dir",
    default=None,
    metavar="PATH",
    help="Data directory [env PRESSLUFT_DATA_DIR; default ./.pressluft if it exists, "
    "else /var/lib/pressluft].",
)


def _database(data_dir: Path) -> Path:
    path = data_dir / "pressluft.db"
    if not path.is_file():
        _fail(f"no database at {path}; start the daemon or run `pressluft migrate` first")
    return path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pressluft")
def main() -> None:
    """Pressluft: a self-hosted control plane for professional WordPress hosting."""


def _run_daemon(mode: Mode, options: dict[str, Any]) -> None:
    from pressluft.db import MigrationError
    from pressluft.errors import PressluftError
    from pressluft.server import ServeError, serve
    from pressluft.vault import VaultError

    config = _resolve(mode, options)
    setup_logging(config.log_format, config.log_level)
    try:
        uvloop.run(serve(config))
    except ServeError as exc:
        _fail(str(exc), EXIT_USAGE if "refusing" in str(exc) else EXIT_CANNOT_RUN)
    except (MigrationError, VaultError) as exc:
        _fail(str(exc))
    except PressluftError as exc:
        hint = (exc.details or {}).get("hint")
        _fail(exc.message + (f" ({hint})" if hint else ""))
    except KeyboardInterrupt:
        pass


@main.command()
@_setting_options
def dev(**options: Any) -> None:
    """Run the daemon for development: zero config, data in ./.pressluft, text logs."""
    _run_daemon("dev", options)


@main.command()
@_setting_options
def serve(**options: Any) -> None:
    """Run the daemon in production mode (configured by PRESSLUFT_* variables, JSON logs)."""
    _run_daemon("serve", options)


@main.command("config")
@click.option("--mode", type=click.Choice(["dev", "serve"]), default="serve", show_default=True)
@click.option("--markdown", is_flag=True, help="Print the settings table for the docs instead.")
@_setting_options
def config_cmd(mode: Mode, markdown: bool, **options: Any) -> None:
    """Show every setting's effective value and where it came from."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    try:
        config, sources = resolve(mode, {k: v for k, v in options.items() if v is not None})
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    width = max(len(s.name) for s in SETTINGS)
    for setting in SETTINGS:
        value = getattr(config, setting.name)
        click.echo(f"{setting.name:<{width}}  {value!s:<28}  ({sources[setting.name]})")


@main.command()
@data_dir_option
def migrate(data_dir: str | None) -> None:
    """Bring the database to this code's schema (creates it if missing)."""
    from pressluft.datadir import DataDirLock, prepare
    from pressluft.db import MigrationError, current_version, migrate_file, open_sync
    from pressluft.errors import DataDirLocked
    from pressluft.features import MIGRATIONS

    path = _tool_data_dir(data_dir)
    prepare(path)
    try:
        with DataDirLock(path, "pressluft migrate"):
            applied = migrate_file(
                str(path / "pressluft.db"), format_ts(SystemClock().now()), sources=MIGRATIONS
            )
            conn = open_sync(path / "pressluft.db", "reader")
            version = current_version(conn)
            conn.close()
    except DataDirLocked as exc:
        _fail(exc.message)
    except MigrationError as exc:
        _fail(str(exc))
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"schema version {version} (up to date)")


@main.command()
@click.option(
    "--verify", is_flag=True, help="Rebuild into a scratch database and diff; change nothing."
)
@data_dir_option
def replay(verify: bool, data_dir: str | None) -> None:
    """Rebuild every projection from the event log."""
    from pressluft.datadir import DataDirLock
    from pressluft.db import open_sync
    from pressluft.errors import DataDirLocked
    from pressluft.features import rebuild_in_place, verify_replay

    path = _tool_data_dir(data_dir)
    db_path = _database(path)
    started = time.perf_counter()
    if verify:
        conn = open_sync(db_path, "reader")
        try:
            result = verify_replay(conn, format_ts(SystemClock().now()))
        except RuntimeError as exc:
            _fail(str(exc))
        finally:
            conn.close()
        took = time.perf_counter() - started
        if result.ok:
            click.echo(f"replay verified: {result.events} events, projections match ({took:.2f}s)")
            return
        click.echo(f"replay differs from the live tables ({len(result.differences)} rows):")
        for d in result.differences:
            click.echo(f"  {d.table} key={list(d.key)}")
            click.echo(f"    live:     {d.live}")
            click.echo(f"    replayed: {d.replayed}")
        sys.exit(EXIT_PROBLEM)
    try:
        with DataDirLock(path, "pressluft replay"):
            conn = open_sync(db_path, "writer")
            try:
                count = rebuild_in_place(conn)
            except RuntimeError as exc:
                _fail(str(exc))
            finally:
                conn.close()
    except DataDirLocked as exc:
        _fail(exc.message + "; `replay --verify` works while it runs")
    click.echo(f"rebuilt projections from {count} events ({time.perf_counter() - started:.2f}s)")


@main.group()
def events() -> None:
    """Read and check the event log."""


@events.command("verify")
@data_dir_option
def events_verify(data_dir: str | None) -> None:
    """Check the hash chain; names the first event that does not hold."""
    from pressluft.db import open_sync
    from pressluft.events import verify_chain

    conn = open_sync(_database(_tool_data_dir(data_dir)), "reader")
    try:
        conn.execute("BEGIN")
        result = verify_chain(conn)
        conn.execute("COMMIT")
    finally:
        conn.close()
    if result.ok:
        click.echo(f"event log intact: {result.checked} events, head seq {result.head_seq}")
        return
    click.echo(f"event log broken at seq {result.first_bad_seq}: {result.reason}")
    sys.exit(EXIT_PROBLEM)


def _format_row(row: Any, as_json: bool) -> str:
    from pressluft.contexts.operations.feed import to_out

    if as_json:
        return msgspec.json.encode(to_out(row, redact=False)).decode()
    actor = msgspec.json.decode(row.meta).get("actor", "")
    return (
        f"{row.seq:>8}  {row.recorded_at}  {row.stream}@{row.stream_version}  "
        f"{row.type}  {actor}  {row.data}"
    )


@events.command("tail")
@click.option("-n", "--lines", default=20, show_default=True, help="How many recent events first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they commit.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--stream", default=None, help="Only this stream.")
@click.option("--type", "type_", default=None, help="Only this event type.")
@data_dir_option
def events_tail(
    lines: int,
    follow: bool,
    as_json: bool,
    stream: str | None,
    type_: str | None,
    data_dir: str | None,
) -> None:
    """Print the newest events (and follow new ones)."""
    from pressluft.db import open_sync
    from pressluft.events import head_seq, read_last_rows, read_rows

    conn = open_sync(_database(_tool_data_dir(data_dir)), "reader")
    head = head_seq(conn)
    rows = read_last_rows(conn, max(lines, 0), stream=stream, type_=type_)
    cursor = head
    for row in rows:
        click.echo(_format_row(row, as_json))
    try:
        while follow:
            new = read_rows(conn, after=cursor, limit=1000, stream=stream, type_=type_)
            for row in new:
                click.echo(_format_row(row, as_json))
            cursor = max([cursor, head_seq(conn), *(r.seq for r in new)])
            if not new:
                time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


@main.group()
def openapi() -> None:
    """The HTTP contract (openapi/pressluft.yaml)."""


@openapi.command("check")
def openapi_check() -> None:
    """Validate the contract and compare its operations with the app's routes."""
    from pressluft.contract_check import check_contract

    problems = check_contract()
    if problems:
        for line in problems:
            click.echo(line)
        sys.exit(EXIT_PROBLEM)
    click.echo("contract valid; the app's routes match it")


@main.group()
def admin() -> None:
    """Operator accounts (works whether or not the daemon is running)."""


def _read_password(password: str | None, password_stdin: bool) -> str:
    if password is not None:
        return password
    if password_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            _fail("no password on standard input", EXIT_USAGE)
        return line
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


def _admin_write(data_dir: Path, make_command: Callable[..., Any]) -> Any:
    """Open the data dir (creating and migrating it if no daemon runs) and run a command;
    a data dir that cannot be written (read-only or full disk, a lock held elsewhere)
    is one line saying so, not a traceback."""
    import sqlite3

    from pressluft.db import is_unavailable

    try:
        return _admin_write_unguarded(data_dir, make_command)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, sqlite3.Error) and not is_unavailable(exc):
            raise
        _fail(
            f"cannot write to the data dir {data_dir}: {exc} (make sure its file system is "
            "mounted read-write and has free space, and that no other process holds the "
            "database's write lock)"
        )


def _admin_write_unguarded(data_dir: Path, make_command: Callable[..., Any]) -> Any:
    from pressluft.datadir import DataDirLock, prepare
    from pressluft.db import MigrationError, current_version, latest_version, migrate_file
    from pressluft.db.connection import open_sync
    from pressluft.db.database import write_now
    from pressluft.errors import DataDirLocked, PressluftError
    from pressluft.features import MIGRATIONS, PROJECTORS
    from pressluft.vault import Vault, VaultError

    prepare(data_dir)
    db_path = data_dir / "pressluft.db"
    lock = DataDirLock(data_dir, "pressluft admin")
    try:
        lock.acquire()
    except DataDirLocked:
        lock = None  # type: ignore[assignment]  # the daemon runs: write alongside it
    try:
        if lock is not None:
            try:
                migrate_file(str(db_path), format_ts(SystemClock().now()), sources=MIGRATIONS)
            except MigrationError as exc:
                _fail(str(exc))
        conn = open_sync(db_path, "writer")
        try:
            if current_version(conn) != latest_version(MIGRATIONS):
                _fail("the database schema is not current; run `pressluft migrate`")
            sealed = int(conn.execute("SELECT count(*) FROM secrets").fetchone()[0])
            try:
                vault = Vault.load_or_create(data_dir / "secrets", sealed=sealed)
            except VaultError as exc:
                _fail(str(exc))
            try:
                return write_now(conn, make_command(vault), SystemClock().now(), PROJECTORS)
            except PressluftError as exc:
                code = EXIT_USAGE if exc.status in (400, 422) else EXIT_PROBLEM
                hint = (exc.details or {}).get("hint") if exc.status >= 500 else None
                _fail(exc.message + (f" ({hint})" if hint else ""), code)
        finally:
            conn.close()
    finally:
        if lock is not None:
            lock.release()


@admin.command("create")
@click.option("--email", required=True, help="The account's email (its login name).")
@click.option("--password", default=None, help="Avoid: visible in process lists and history.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="admin", show_default=True)
@click.option(
    "--name", "display_name", default=None, help="Display name [default: from the email]."
)
@data_dir_option
def admin_create(
    email: str,
    password: str | None,
    password_stdin: bool,
    role: str,
    display_name: str | None,
    data_dir: str | None,
) -> None:
    """Create an operator account (prompts for the password unless given)."""
    from pressluft.acting import CLI_ACTOR
    from pressluft.contexts.access.passwords import PasswordHasher, password_problem
    from pressluft.contexts.access.users import create_user_command, valid_email
    from pressluft.errors import ValidationFailed
    from pressluft.events import Meta

    try:
        valid_email(email)
    except ValidationFailed as exc:
        _fail(exc.message, EXIT_USAGE)
    secret = _read_password(password, password_stdin)
    problem = password_problem(secret)
    if problem:
        _fail(f"password rejected: {problem}", EXIT_USAGE)
    password_hash = PasswordHasher().hash_sync(secret)
    user = _admin_write(
        _tool_data_dir(data_dir),
        lambda vault: create_user_command(
            vault, email, password_hash, role, display_name, Meta(actor=CLI_ACTOR)
        ),
    )
    click.echo(f"created {user.role} {user.email} (id {user.id})")


@admin.command("reset-password")
@click.option("--email", required=True)
@click.option("--password", default=None, help="Avoid: visible in process lists and history.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--keep-tokens",
    is_flag=True,
    help="Keep the API tokens this account created (default: revoke them, with the tokens "
    "they created).",
)
@data_dir_option
def admin_reset_password(
    email: str, password: str | None, password_stdin: bool, keep_tokens: bool, data_dir: str | None
) -> None:
    """Set a new password; the account's sessions end and its API tokens are revoked."""
    from pressluft.acting import CLI_ACTOR
    from pressluft.contexts.access.passwords import PasswordHasher, password_problem
    from pressluft.contexts.access.users import change_password_command
    from pressluft.events import Meta

    secret = _read_password(password, password_stdin)
    problem = password_problem(secret)
    if problem:
        _fail(f"password rejected: {problem}", EXIT_USAGE)
    password_hash = PasswordHasher().hash_sync(secret)
    reset = _admin_write(
        _tool_data_dir(data_dir),
        lambda vault: change_password_command(
            vault, email, password_hash, Meta(actor=CLI_ACTOR), revoke_tokens=not keep_tokens
        ),
    )
    click.echo(
        f"password changed for {email.strip().lower()}; {reset.sessions_ended} session(s) "
        f"ended, {reset.tokens_revoked} token(s) revoked"
    )


@main.group("recovery-kit")
def recovery_kit() -> None:
    """The key that restores this control plane on a new machine (specs/backups.md)."""


@recovery_kit.command("export")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the kit to this new file (0600) instead of standard output.",
)
@data_dir_option
def recovery_kit_export(out: Path | None, data_dir: str | None) -> None:
    """Export the recovery kit: the recovery key (created on the first export) and the
    backup target. Store it offline; the control plane backs itself up with it."""
    from pressluft.acting import CLI_ACTOR
    from pressluft.contexts.backups.recovery import export_kit_command
    from pressluft.events import Meta

    kit = _admin_write(
        _tool_data_dir(data_dir), lambda vault: export_kit_command(vault, Meta(actor=CLI_ACTOR))
    )
    text = msgspec.json.format(msgspec.json.encode(kit), indent=2).decode() + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _fail(f"{out} exists: choose a new file", EXIT_USAGE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    click.echo(
        "recovery kit exported. Store it OFFLINE (a password manager, a printed copy in a "
        "safe): with the bucket it restores every node key and site. Restore with "
        "`pressluft restore-control-plane --kit <file> --data-dir <empty dir>`.",
        err=True,
    )


@main.command("restore-control-plane")
@click.option(
    "--kit",
    "kit_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The recovery kit file.",
)
@click.option(
    "--from",
    "source",
    default=None,
    metavar="URL",
    help="Where the backups are (https://host[:port]/bucket[/prefix]); default: the kit's.",
)
@click.option("--snapshot", default=None, help="A copy's id (default: the latest).")
@data_dir_option
def restore_control_plane_cmd(
    kit_path: Path, source: str | None, snapshot: str | None, data_dir: str | None
) -> None:
    """Bring the control plane back from its backup into an empty data dir, then check
    the event log's chain and the projections."""
    from pressluft.contexts.backups.control_plane_worker import restore_control_plane
    from pressluft.contexts.backups.recovery import parse_kit
    from pressluft.db import open_sync
    from pressluft.events import verify_chain
    from pressluft.features import verify_replay
    from pressluft.runners.restic import ResticError

    path = _tool_data_dir(data_dir)
    try:
        kit = parse_kit(kit_path.read_bytes())
        restored = asyncio.run(restore_control_plane(kit, path, source, snapshot))
    except (ValueError, ResticError) as exc:
        _fail(str(exc))
    click.echo(f"restored copy {restored.snapshot_id[:8]} of {restored.taken_at} into {path}")
    conn = open_sync(path / "pressluft.db", "reader")
    try:
        conn.execute("BEGIN")
        chain = verify_chain(conn)
        conn.execute("COMMIT")
        replay = verify_replay(conn, format_ts(SystemClock().now()))
        nodes = conn.execute("SELECT count(*) FROM nodes WHERE status != 'decommissioned'")
        sites = conn.execute("SELECT count(*) FROM sites WHERE status != 'deleted'")
        counts = (nodes.fetchone()[0], sites.fetchone()[0])
    finally:
        conn.close()
    if not chain.ok:
        _fail(f"event log broken at seq {chain.first_bad_seq}: {chain.reason}", EXIT_PROBLEM)
    if not replay.ok:
        differing = len(replay.differences)
        _fail(f"replay differs from the copy's tables ({differing} rows)", EXIT_PROBLEM)
    click.echo(
        f"event log intact: {chain.checked} events; replay verified; {counts[0]} node(s),"
        f" {counts[1]} site(s). Start the daemon on {path}."
    )


@main.group("node-image")
def node_image() -> None:
    """The image of local lab nodes (the docker provider)."""


@node_image.command("build")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get(
        "PRESSLUFT_NODE_IMAGE_CACHE", str(Path.home() / ".cache" / "pressluft" / "node-images")
    ),
    show_default="~/.cache/pressluft/node-images or $PRESSLUFT_NODE_IMAGE_CACHE",
    help="Where root filesystem tarballs and downloaded packages are kept.",
)
@click.option(
    "--docker-host",
    default=lambda: os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
    show_default="$DOCKER_HOST or the default socket",
    help="The engine to import the image into.",
)
@click.option(
    "--release",
    type=click.Choice(RELEASES),
    default=ImageInputs.suite,
    show_default=True,
    help="The Debian release of the image (12 bookworm, 13 trixie).",
)
@click.option("--mirror", default=ImageInputs.mirror, show_default=True)
@click.option("--security-mirror", default=ImageInputs.security_mirror, show_default=True)
@click.option("--epoch", default=ImageInputs.epoch, show_default=True, help="Bump to rebuild.")
def node_image_build(
    cache_dir: Path,
    docker_host: str,
    release: str,
    mirror: str,
    security_mirror: str,
    epoch: str,
) -> None:
    """Build the node image offline (debootstrap, the whole stack baked in) and import it.

    The image is tagged by a hash of its inputs and built only when they change;
    prints the tag.
    """
    inputs = ImageInputs(suite=release, mirror=mirror, security_mirror=security_mirror, epoch=epoch)
    tag = image_tag(inputs)
    try:
        tarball = build_tarball(inputs, cache_dir, lambda line: click.echo(line, err=True))
        imported = import_tarball(docker_host, tarball, tag)
    except (PermissionError, FileNotFoundError) as exc:
        _fail(str(exc), EXIT_CANNOT_RUN)
    except RuntimeError as exc:
        _fail(str(exc), EXIT_PROBLEM)
    click.echo(("imported " if imported else "present ") + tag, err=True)
    click.echo(tag)


@main.command()
@data_dir_option
@click.option(
    "--docker-host",
    metavar="URL",
    default=lambda: os.environ.get("PRESSLUFT_DOCKER_HOST", "auto"),
    show_default="$PRESSLUFT_DOCKER_HOST or auto",
    help="The Docker engine to check (unix://, tcp://, ssh://). `auto`: the one "
    "`pressluft dev` would use ($DOCKER_HOST, else the default socket). A named "
    "engine that cannot be reached fails the check.",
)
def doctor(data_dir: str | None, docker_host: str) -> None:
    """Check the machine and the data dir; exits 1 when a required check fails."""
    from pressluft.config import parse_docker_host
    from pressluft.contexts.operations.doctor import run_checks
    from pressluft.features import MIGRATIONS

    try:
        engine = parse_docker_host(docker_host)
    except ConfigError as exc:
        _fail(f"--docker-host: {exc}", EXIT_USAGE)
    results = run_checks(_tool_data_dir(data_dir), docker_host=engine, migrations=MIGRATIONS)
    width = max(len(r.name) for r in results)
    colors = {"ok": "green", "fail": "red", "warn": "yellow", "info": "blue"}
    for r in results:
        click.echo(
            click.style(f"{r.status.upper():<5}", fg=colors[r.status])
            + f" {r.name:<{width}}  {r.detail}"
        )
    if any(r.status == "fail" for r in results):
        sys.exit(EXIT_PROBLEM)


@main.group()
def service() -> None:
    """The systemd service running `pressluft serve` (Debian and other systemd hosts)."""


@service.command("install")
@click.option(
    "--user", default="pressluft", show_default=True,
    help="The system user the daemon runs as (created when missing: no login shell, "
    "home = the data dir).",
)  # fmt: skip
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/pressluft",
    show_default=True,
    help="The daemon's data dir (a StateDirectory= under /var/lib, else ReadWritePaths=).",
)
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    help="Where pressluft.service is written.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default="/etc/pressluft/pressluft.env",
    show_default=True,
    help="The unit's EnvironmentFile= (PRESSLUFT_* settings); a commented example is "
    "written when it is missing, an existing one is never touched.",
)
@click.option(
    "--docker-group",
    default=None,
    metavar="GROUP",
    help="Opt-in for lab nodes: the group of the Docker socket (e.g. docker), added to the "
    "service's groups, and PRESSLUFT_DOCKER_HOST set to /var/run/docker.sock. That group "
    "is root-equivalent on this machine.",
)
@click.option(
    "--print", "--dry-run", "print_only", is_flag=True,
    help="Print the unit and change nothing (needs no root).",
)  # fmt: skip
@click.option(
    "--now", is_flag=True, help="Then systemctl daemon-reload and enable --now the service."
)
def service_install(
    user: str,
    data_dir: Path,
    unit_dir: Path,
    env_file: Path,
    docker_group: str | None,
    print_only: bool,
    now: bool,
) -> None:
    """Write the systemd unit of `pressluft serve` (and its user, data dir, environment
    file). Running it again changes nothing; it reports what it wrote."""
    from pressluft import systemd

    data_dir = Path(os.path.abspath(data_dir))
    env_file = Path(os.path.abspath(env_file))
    try:
        if not print_only:
            systemd.require_root("install")
        try:
            shutdown_timeout = systemd.read_shutdown_timeout(env_file)
        except PermissionError:  # printing as another user: /etc/pressluft is root's
            shutdown_timeout = systemd.DEFAULT_SHUTDOWN_TIMEOUT
            click.echo(
                f"note: cannot read {env_file}; TimeoutStopSec assumes the default "
                f"shutdown_timeout_seconds ({shutdown_timeout})",
                err=True,
            )
        inputs = systemd.UnitInputs(
            executable=systemd.find_executable(),
            user=user,
            data_dir=data_dir,
            env_file=env_file,
            shutdown_timeout_seconds=shutdown_timeout,
            docker_group=docker_group,
        )
        if print_only:
            click.echo(systemd.render_unit(inputs), nl=False)
            return
        report = systemd.install(inputs, unit_dir=Path(os.path.abspath(unit_dir)), now=now)
    except systemd.InstallError as exc:
        _fail(exc.message, exc.code)
    for line in report.lines:
        click.echo(line)
    click.echo("changed nothing" if not report.changed else "done")
    click.echo(
        f"First admin: runuser -u {user} -- {inputs.executable} admin create "
        f"--email you@example.com"
        + ("" if data_dir == systemd.DEFAULT_DATA_DIR else f" --data-dir {data_dir}")
    )


@service.command("uninstall")
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    help="Where pressluft.service was written.",
)
def service_uninstall(unit_dir: Path) -> None:
    """Stop and disable the service and remove its unit; keeps the data dir, the
    environment file and the user."""
    from pressluft import systemd

    try:
        report = systemd.uninstall(Path(os.path.abspath(unit_dir)))
    except systemd.InstallError as exc:
        _fail(exc.message, exc.code)
    for line in report.lines:
        click.echo(line)
