"""What a backup's manifest says about its streams, read while they pass: the
tables and row counts of a database dump, the files and bytes of a tar archive.

Counted from the bytes stored (not queried beside them), so the manifest matches
the backup exactly, even on a site that changes while it is backed up.
"""

from __future__ import annotations

import re

__all__ = ["RowCounter", "TarCounter"]

_CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)`(?: \([^)]*\))? VALUES ?")
# A quoted string of mysqldump (backslash escapes); hex blobs (--hex-blob) need none.
# Unrolled (runs of plain bytes, then one escape): the same strings as
# '(?:[^'\\]|\\.)*', matched ~4x faster — it runs on the event loop over every byte of
# the dump (bench/backup.py).
_STRING = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.DOTALL)


class RowCounter:
    """Rows per table of a mysqldump stream: feed it chunks, read `tables` at the end.

    An `INSERT INTO` statement (extended inserts) may hold its rows on its own line or
    one per line after it; mysqldump escapes newlines inside strings, so a line never
    ends inside a string. With the strings blanked out, each row is one `(`."""

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self._rest = b""
        self._table: str | None = None  # inside an INSERT of this table

    def feed(self, chunk: bytes) -> None:
        data = self._rest + chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> dict[str, int]:
        if self._rest:
            self._line(self._rest)
            self._rest = b""
        return self.tables

    def _rows(self, values: bytes) -> None:
        assert self._table is not None
        blanked = _STRING.sub(b"''", values)
        self.tables[self._table] = self.tables.get(self._table, 0) + blanked.count(b"(")
        if blanked.rstrip().endswith(b";"):
            self._table = None

    def _line(self, line: bytes) -> None:
        if self._table is not None:
            self._rows(line)
        elif line.startswith(b"INSERT INTO "):
            found = _INSERT.match(line)
            if found is not None:
                self._table = found.group(1).replace(b"``", b"`").decode(errors="replace")
                self._rows(line[found.end() :])
        elif line.startswith(b"CREATE TABLE "):
            found = _CREATE.match(line)
            if found is not None:
                name = found.group(1).replace(b"``", b"`").decode(errors="replace")
                self.tables.setdefault(name, 0)


class TarCounter:
    """Regular files and their bytes in a tar stream (ustar/GNU headers, 512-byte
    blocks): feed it chunks as they pass."""

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self._buffer = bytearray()
        self._skip = 0  # bytes of member data still to pass
        self._done = False

    def feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view and not self._done:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            need = 512 - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) == 512:
                self._header(bytes(self._buffer))
                self._buffer.clear()

    def _header(self, block: bytes) -> None:
        if block == bytes(512):
            self._done = True  # the end-of-archive blocks
            return
        size = _size(block[124:136])
        kind = block[156:157]
        if kind in (b"0", b"\0", b"7"):
            self.files += 1
            self.bytes += size
        # Every member's data (long names, pax headers, files) fills whole blocks.
        self._skip = (size + 511) // 512 * 512


def _size(field: bytes) -> int:
    """A header's size field: octal text, or base-256 for large members."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0
