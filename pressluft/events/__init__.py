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
from pressluft.events.projectors import PROJECTORS
from pressluft.events.types import ALL_EVENTS, EVENT_TYPES, Event, SettingsChanged
from pressluft.events.upcast import decode_event

__all__ = [
    "ALL_EVENTS",
    "ANY_VERSION",
    "EVENT_TYPES",
    "GENESIS_HASH",
    "NO_STREAM",
    "PROJECTORS",
    "Difference",
    "Event",
    "Meta",
    "ProjectorSet",
    "Recorded",
    "SettingsChanged",
    "StoredRow",
    "VerifyResult",
    "actor_filter",
    "append",
    "decode_event",
    "diff_tables",
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
