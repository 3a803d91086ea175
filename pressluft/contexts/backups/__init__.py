"""Backups: the operator's S3-compatible target, backups of environments (restic on
the control plane, one repository per site; nodes only stream over SSH), restores
that verify, switch and switch back, and the retention cleanup.

Its `Feature` is in `feature.py`. Other contexts may take a backup before they
change an environment with `take_backup` (after `request_pre_backup_command`)."""

from __future__ import annotations

from pressluft.contexts.backups.commands import request_pre_backup_command
from pressluft.contexts.backups.workers import take_backup

__all__ = ["request_pre_backup_command", "take_backup"]
