"""Seeds a data dir with real events through the service layer (no HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pressluft.acting import Context
from pressluft.config import resolve
from pressluft.contexts.settings.service import SettingsPatch, change_settings
from pressluft.runtime import Runtime


def seed_settings(data_dir: Path, count: int) -> None:
    """Run `count` settings changes against `data_dir` (creates it)."""

    async def main() -> None:
        # `serve` mode: no first-run admin, so the log holds exactly these events.
        config, _ = resolve("serve", {"data_dir": str(data_dir)}, environ={})
        runtime = Runtime(config)
        await runtime.start()
        try:
            ctx = Context(actor="test:seed")
            for i in range(count):
                patch = SettingsPatch(control_plane_domain=f"host{i}.example.com")
                await change_settings(runtime.db, runtime.vault, patch, ctx)
        finally:
            await runtime.stop()

    asyncio.run(main())
