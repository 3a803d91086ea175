"""The event log: event types, append/read, the hash chain, projections, replay."""

from pressluft.events.chain import GENESIS_HASH, VerifyResult, event_hash, verify_chain
from pressluft.events.log import (
    ANY_VERSION,
    NO_STREAM,
    Meta,
    Recorded,
    StoredRow,
    actor_filter,
    append,
    head_seq,
    iter_rows,
    read_last_rows,
    read_rows,
    rebuild,
    stream_version,
    type_filter,
)
from pressluft.events.projection import Difference, ProjectorSet, diff_tables
from pressluft.events.types import Event, event_classes
from pressluft.events.upcast import decode_event

__all__ = [
    "ANY_VERSION",
    "GENESIS_HASH",
    "NO_STREAM",
    "Difference",
    "Event",
    "Meta",
    "ProjectorSet",
    "Recorded",
    "StoredRow",
    "VerifyResult",
    "actor_filter",
    "append",
    "decode_event",
    "diff_tables",
    "event_classes",
    "event_hash",
    "head_seq",
    "iter_rows",
    "read_last_rows",
    "read_rows",
    "rebuild",
    "stream_version",
    "type_filter",
    "verify_chain",
]
