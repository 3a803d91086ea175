"""`/api/backup-target`, `/api/sites/{id}/backup-target`,
`/api/environments/{id}/backups`, `/api/backups/{id}` and
`/api/environments/{id}/restore`: the default storage target and a site's own;
backups of an environment (take, list, read); a restore."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter
from litestar.response import Stream

from pressluft.acting import Context
from pressluft.contexts.backups.commands import (
    BackupAccepted,
    CreateBackupRequest,
    JobAccepted,
    RestoreRequest,
    TargetRequest,
)
from pressluft.contexts.backups.probes import object_stream
from pressluft.contexts.backups.queries import BackupPage, BackupView, TargetView
from pressluft.contexts.backups.recovery import ControlPlaneBackups
from pressluft.contexts.backups.schedules import ScheduleRequest, ScheduleView
from pressluft.contexts.backups.service import Backups
from pressluft.http.params import query_choice
from pressluft.http.writes import answer, retry_of

__all__ = ["BACKUP_ROUTES"]

EnvironmentIdParam = Annotated[str, PathParameter(name="environment_id")]  # not an id: 404
BackupIdParam = Annotated[str, PathParameter(name="backup_id")]  # likewise
SiteIdParam = Annotated[str, PathParameter(name="site_id")]  # likewise
Raw = Annotated[str | None, QueryParameter(max_length=64)]
Confirm = Annotated[str | None, QueryParameter(max_length=100)]
STATUSES = ("pending", "running", "completed", "failed", "expired")
OBJECTS = ("db.sql", "files.tar")


@get("/api/backup-target", operation_id="getBackupTarget", tags=["backups"])
async def backup_target(backups: NamedDependency[Backups]) -> TargetView:
    return await backups.target()


@put("/api/backup-target", operation_id="configureBackupTarget", tags=["backups"])
async def configure_backup_target(
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    data: Annotated[TargetRequest, Body()],
) -> TargetView:
    return await backups.configure_target(data, ctx)


@delete("/api/backup-target", operation_id="removeBackupTarget", tags=["backups"])
async def remove_backup_target(
    backups: NamedDependency[Backups], ctx: NamedDependency[Context]
) -> None:
    await backups.remove_target(ctx)


@get("/api/sites/{site_id:str}/backup-target", operation_id="getSiteBackupTarget", tags=["backups"])
async def site_backup_target(backups: NamedDependency[Backups], site_id: SiteIdParam) -> TargetView:
    return await backups.site_target(site_id)


@put(
    "/api/sites/{site_id:str}/backup-target",
    operation_id="configureSiteBackupTarget",
    tags=["backups"],
)
async def configure_site_backup_target(
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
    data: Annotated[TargetRequest, Body()],
) -> TargetView:
    return await backups.configure_target(data, ctx, site_id)


@delete(
    "/api/sites/{site_id:str}/backup-target",
    operation_id="removeSiteBackupTarget",
    tags=["backups"],
)
async def remove_site_backup_target(
    backups: NamedDependency[Backups], ctx: NamedDependency[Context], site_id: SiteIdParam
) -> None:
    await backups.remove_target(ctx, site_id)


@get("/api/environments/{environment_id:str}/backups", operation_id="listBackups", tags=["backups"])
async def list_backups(
    backups: NamedDependency[Backups],
    environment_id: EnvironmentIdParam,
    status: Raw = None,
    before: Raw = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> BackupPage:
    chosen = query_choice("status", status, STATUSES)
    return await backups.list(environment_id, limit, before, chosen)


@post(
    "/api/environments/{environment_id:str}/backups",
    operation_id="createBackup",
    status_code=202,
    tags=["backups"],
)
async def create_backup(
    request: Request[Any, Any, Any],
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[CreateBackupRequest, Body()],
) -> Response[BackupAccepted]:
    done = await backups.create(environment_id, data, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@get("/api/backups/{backup_id:str}", operation_id="getBackup", tags=["backups"])
async def backup(backups: NamedDependency[Backups], backup_id: BackupIdParam) -> BackupView:
    return await backups.get(backup_id)


@get(
    "/api/backups/{backup_id:str}/download",
    operation_id="downloadBackup",
    tags=["backups"],
    media_type="application/octet-stream",
)
async def download_backup(
    backups: NamedDependency[Backups],
    backup_id: BackupIdParam,
    object: Annotated[str, QueryParameter(max_length=16)],
) -> Stream:
    name = query_choice("object", object, OBJECTS)
    assert name is not None
    filename, download = await backups.download(backup_id, name)
    return Stream(
        object_stream(download),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@post(
    "/api/backups/{backup_id:str}/verify",
    operation_id="verifyBackup",
    status_code=202,
    tags=["backups"],
)
async def verify_backup(
    request: Request[Any, Any, Any],
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    backup_id: BackupIdParam,
) -> Response[JobAccepted]:
    done = await backups.verify(backup_id, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@post(
    "/api/environments/{environment_id:str}/restore",
    operation_id="restoreEnvironment",
    status_code=202,
    tags=["backups"],
)
async def restore_environment(
    request: Request[Any, Any, Any],
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[RestoreRequest, Body()],
    confirm: Confirm = None,
) -> Response[BackupAccepted]:
    done = await backups.restore(environment_id, data, confirm, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@get(
    "/api/environments/{environment_id:str}/backup-schedule",
    operation_id="getBackupSchedule",
    tags=["backups"],
)
async def backup_schedule(
    backups: NamedDependency[Backups], environment_id: EnvironmentIdParam
) -> ScheduleView:
    return await backups.schedule(environment_id)


@put(
    "/api/environments/{environment_id:str}/backup-schedule",
    operation_id="setBackupSchedule",
    tags=["backups"],
)
async def set_backup_schedule(
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[ScheduleRequest, Body()],
) -> ScheduleView:
    return await backups.change_schedule(environment_id, data, ctx)


@get("/api/control-plane/backups", operation_id="listControlPlaneBackups", tags=["backups"])
async def control_plane_backups(backups: NamedDependency[Backups]) -> ControlPlaneBackups:
    return await backups.control_plane_backups()


@post(
    "/api/control-plane/backups",
    operation_id="backUpControlPlane",
    status_code=202,
    tags=["backups"],
)
async def back_up_control_plane(
    request: Request[Any, Any, Any],
    backups: NamedDependency[Backups],
    ctx: NamedDependency[Context],
) -> Response[JobAccepted]:
    done = await backups.back_up_control_plane(ctx, await retry_of(request, ctx))
    return answer(done, 202)


BACKUP_ROUTES = [
    backup_target,
    configure_backup_target,
    remove_backup_target,
    site_backup_target,
    configure_site_backup_target,
    remove_site_backup_target,
    list_backups,
    create_backup,
    backup,
    download_backup,
    verify_backup,
    restore_environment,
    backup_schedule,
    set_backup_schedule,
    control_plane_backups,
    back_up_control_plane,
]
