"""The outcomes the nodes context's workers record (commands they run through
their port, fenced by their lease): a check's, a decommissioning's."""

from __future__ import annotations

from collections.abc import Callable

from pressluft.contexts.nodes.events import (
    NodeChecked,
    NodeContainerRemoved,
    NodeDecommissioned,
    NodeHostKeyPinned,
)
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.vault import Vault

__all__ = ["record_check", "record_decommission"]


def record_check(
    node_id: str, events: list[NodeChecked], pin: NodeHostKeyPinned | None
) -> Callable[[WriteTx, Meta], None]:
    """A check's outcome: the host key pinned at first contact (only if none is
    pinned meanwhile), then `node.checked`."""

    def command(tx: WriteTx, meta: Meta) -> None:
        recorded: list[NodeHostKeyPinned | NodeChecked] = []
        if pin is not None:
            pinned = tx.conn.execute(
                "SELECT host_key FROM nodes WHERE id = ?", (node_id,)
            ).fetchone()
            if pinned is not None and pinned[0] is None:
                recorded.append(pin)
        recorded.extend(events)
        append(tx, f"node:{node_id}", None, recorded, meta)

    return command


def record_decommission(
    node_id: str, removed: list[NodeContainerRemoved]
) -> Callable[[WriteTx, Meta], bool]:
    """`node.decommissioned` (after its container's removal, if any) and the node's
    private key destroyed for good — unless it is decommissioned already."""

    def command(tx: WriteTx, meta: Meta) -> bool:
        row = tx.conn.execute(
            "SELECT status, key_secret_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()
        if row is None or row[0] == "decommissioned":
            return False
        append(tx, f"node:{node_id}", None, [*removed, NodeDecommissioned(node_id=node_id)], meta)
        if row[1] is not None:
            Vault.destroy(tx.conn, row[1])  # the private key is gone for good
        return True

    return command
