"""The archive checks of a code deploy (specs/releases.md, REL-20…29): an uploaded
archive or a `git archive` of a ref — tar, tar.gz or zip, told apart by content — is
read on the control plane and either refused with a stable reason or turned into a
normalised plain tar of `wp-content` code (themes, plugins, mu-plugins; never
uploads) and a summary of the items it replaces.

It owns which entries are deployed, ignored or refused, the limits (bytes counted as
they are read, never as a header declares them), the symlink rule and the normalised
tar's form. Pure: a file in, a file out, no database and no node. Memory is bounded
by the limits (entries, names); content passes through an anonymous spool file
beside the target, because the normalised tar is sorted and the input is not.

Tar is read by this module, not by `tarfile`: in Python 3.11 `tarfile` takes a damaged
header in mid-archive for the archive's end (a partial deploy, silently), reads an
extended header of any declared size into memory and keeps every member in a list.
`tarfile` writes the normalised tar; `zipfile` reads zips, after the central
directory's size and entry count are checked against the limits.
"""

from __future__ import annotations

import calendar
import contextlib
import gzip
import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Final, Literal, NoReturn, Protocol

import msgspec

__all__ = [
    "CODE_DIRS",
    "LIMITS",
    "REASONS",
    "ArchiveRefused",
    "Checked",
    "Limits",
    "Summary",
    "check_archive",
]

MiB: Final = 1024 * 1024

#: Every reason an archive is refused for (`ArchiveRefused.reason`), stable: the API
#: will answer them as `details.reason`.
REASONS: Final = (
    "not_an_archive",
    "corrupt",
    "unsupported_entry",
    "bad_name",
    "absolute_path",
    "parent_reference",
    "path_too_long",
    "path_too_deep",
    "duplicate_entry",
    "path_conflict",
    "hard_link",
    "special_file",
    "link_outside",
    "link_loop",
    "outside_wp_content_code",
    "no_wp_content_code",
    "too_large",
    "too_many_entries",
)

#: The directories of `wp-content` a deploy replaces items of.
CODE_DIRS: Final = frozenset({"themes", "plugins", "mu-plugins"})

_BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(_BLOCK)
_CHUNK: Final = 256 * 1024
#: A pax or GNU extended header's largest size (a path and a link target of 4096
#: bytes each fit many times over).
_EXTENDED_MAX: Final = 64 * 1024
#: Linux's NAME_MAX: the longest single component of a path.
_COMPONENT_MAX: Final = 255
#: How many symlinks one symlink may pass through (Linux's MAXSYMLINKS).
_LINK_DEPTH: Final = 40
#: How many ignored paths the summary names (it counts them all).
_IGNORED_SHOWN: Final = 50
#: Characters a name or a link target may not hold: control characters (C0, DEL, C1),
#: the backslash, and lone surrogates (bytes that were not UTF-8).
_BAD_CHARACTER: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\\\ud800-\udfff]")
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SHOWN_MAX: Final = 512
_MTIME_MAX: Final = 8**11 - 1

Kind = Literal["file", "dir", "link"]
Format = Literal["tar", "tar.gz", "zip"]


def _shown(name: str) -> str:
    """A name fit for a message: control characters and non-UTF-8 bytes escaped, cut."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            return f"\\x{code - 0xDC00:02x}"
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    shown = _UNPRINTABLE.sub(escape, name)
    return shown if len(shown) <= _SHOWN_MAX else shown[:_SHOWN_MAX] + "…"


class ArchiveRefused(Exception):
    """The archive cannot be deployed. `reason` is one of `REASONS`; `path` names the
    offending entry as the archive does (escaped, cut to 512 characters), or is None
    when the archive as a whole is refused. The message never holds more of the
    archive than that path."""

    def __init__(self, reason: str, message: str, path: str | None = None) -> None:
        assert reason in REASONS, reason
        self.reason = reason
        self.message = message
        self.path = None if path is None else _shown(path)
        super().__init__(message if self.path is None else f"{message}: {self.path}")


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What one archive may hold (REL-27)."""

    #: The files' content plus every name, link target and extended header, counted
    #: as they are read.
    max_bytes: int = 512 * MiB
    #: Entries read (extended headers excepted), and entries of the normalised tar.
    max_entries: int = 100_000
    #: Bytes (UTF-8) of a name or a link target; one component may have 255.
    max_path: int = 4096
    #: Components of a name.
    max_depth: int = 64


LIMITS: Final = Limits()


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """What a checked archive deploys."""

    format: Format
    #: The items the deploy replaces whole, sorted: `plugins/<slug>`, `themes/<slug>`,
    #: `mu-plugins/<file-or-dir>` (a file directly in a code directory is one too).
    items: tuple[str, ...]
    #: Regular files deployed, and their bytes.
    files: int
    total_bytes: int
    #: The SHA-256 of the normalised tar.
    sha256: str
    #: Paths not deployed (top-level files, dot-directories, `__MACOSX`), the first 50
    #: sorted, and how many entries they held.
    ignored: tuple[str, ...]
    ignored_entries: int


@dataclass(frozen=True)
class Checked:
    """An accepted archive: the normalised tar written, and its summary."""

    tar: Path
    summary: Summary


@dataclass(slots=True)
class _Entry:
    name: str  # as the archive names it, for messages
    parts: tuple[str, ...]  # its normalised components
    kind: Kind
    executable: bool
    mtime: int
    target: str = ""  # a symlink's
    offset: int = 0  # a file's content in the spool
    size: int = 0


def _refuse(reason: str, message: str, path: str | None = None) -> NoReturn:
    raise ArchiveRefused(reason, message, path)


# -- names ---------------------------------------------------------------------------


def _name_parts(name: str, kind: Kind, limits: Limits) -> tuple[str, ...]:
    """The components of an entry's name, `.` and empty ones dropped; refuses the
    names no deploy should hold (REL-23)."""
    if not name:
        _refuse("bad_name", "an entry without a name")
    if _BAD_CHARACTER.search(name):
        _refuse("bad_name", "a name with a control character, a backslash or non-UTF-8 bytes", name)
    if len(name.encode()) > limits.max_path:
        _refuse("path_too_long", f"a name longer than {limits.max_path} bytes", name)
    if name.startswith("/"):
        _refuse("absolute_path", "an absolute name", name)
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        _refuse("parent_reference", "a name with a '..' component", name)
    if any(len(p.encode()) > _COMPONENT_MAX for p in parts):
        _refuse("path_too_long", f"a name component longer than {_COMPONENT_MAX} bytes", name)
    if len(parts) > limits.max_depth:
        _refuse("path_too_deep", f"a name deeper than {limits.max_depth} directories", name)
    if kind != "dir" and name.rsplit("/", 1)[-1] in ("", "."):
        _refuse("bad_name", "a file or symlink named like a directory", name)
    return parts


def _check_target(name: str, target: str, limits: Limits) -> None:
    """A symlink's target as text, wherever the link is; where a deployed one leads is
    checked once the tree is known (`_Links`)."""
    if not target:
        _refuse("bad_name", "a symlink without a target", name)
    if _BAD_CHARACTER.search(target):
        _refuse(
            "bad_name",
            "a symlink target with a control character, a backslash or non-UTF-8 bytes",
            name,
        )
    if len(target.encode()) > limits.max_path:
        _refuse("path_too_long", f"a symlink target longer than {limits.max_path} bytes", name)


# -- what the readers hand their entries to ----------------------------------------


class _Tree:
    """The archive's entries as the readers find them: counted against the limits,
    each name checked, duplicates refused, file content appended to the spool."""

    def __init__(self, limits: Limits, spool: IO[bytes]) -> None:
        self.limits = limits
        self.entries: dict[tuple[str, ...], _Entry] = {}
        self._spool = spool
        self._spooled = 0
        self._count = 0
        self._used = 0

    def count(self) -> None:
        """One more entry read."""
        self._count += 1
        if self._count > self.limits.max_entries:
            _refuse("too_many_entries", f"more than {self.limits.max_entries} entries")

    def charge(self, size: int, name: str | None = None) -> None:
        """`size` more bytes read (content, a name, an extended header)."""
        self._used += size
        if self._used > self.limits.max_bytes:
            _refuse("too_large", f"more than {self.limits.max_bytes} bytes unpacked", name)

    def fits(self, size: int, name: str) -> None:
        """Refuses a declared size at once when it cannot fit (a header may only
        refuse early; what counts is what is read)."""
        if self._used + size > self.limits.max_bytes:
            _refuse("too_large", f"more than {self.limits.max_bytes} bytes unpacked", name)

    def add(self, name: str, kind: Kind, executable: bool, mtime: int, target: str = "") -> _Entry:
        parts = _name_parts(name, kind, self.limits)
        if kind == "link":
            _check_target(name, target, self.limits)
        self.charge(len(name.encode()) + len(target.encode()), name)
        if parts in self.entries:
            _refuse("duplicate_entry", "a second entry for one path", name)
        entry = _Entry(name, parts, kind, executable, mtime, target, self._spooled)
        if parts:  # `.` or `./`: the archive's own top, nothing to deploy
            self.entries[parts] = entry
        return entry

    def content(self, entry: _Entry, chunk: bytes) -> None:
        self.charge(len(chunk), entry.name)
        self._spool.write(chunk)
        self._spooled += len(chunk)
        entry.size += len(chunk)


def _mtime(value: int) -> int:
    return min(max(value, 0), _MTIME_MAX)


# -- tar -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Header:
    name: bytes
    linkname: bytes
    typeflag: bytes
    mode: int
    size: int
    mtime: int


def _is_tar_block(block: bytes) -> bool:
    return len(block) == _BLOCK and (
        block[257:263] in (b"ustar\x00", b"ustar ") or block == _ZERO_BLOCK
    )


def _number(field: bytes) -> int:
    """A tar numeric field: octal digits, or GNU's base-256 (first byte 0x80 or 0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    digits = field.split(b"\x00", 1)[0].strip(b" ")
    if not digits:
        return 0
    if not all(48 <= b <= 55 for b in digits):
        _refuse("corrupt", "a tar header with a malformed number")
    return int(digits, 8)


def _text(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def _header(block: bytes) -> _Header:
    if block[257:263] not in (b"ustar\x00", b"ustar "):
        _refuse("corrupt", "a tar header that is not a ustar header")
    spaced = block[:148] + b" " * 8 + block[156:]
    signed = sum(b - 256 if b >= 128 else b for b in spaced)  # what some old tars wrote
    if _number(block[148:156]) not in (sum(spaced), signed):
        _refuse("corrupt", "a tar header with a wrong checksum")
    name = _text(block[0:100])
    prefix = _text(block[345:500]) if block[257:263] == b"ustar\x00" else b""
    return _Header(
        name=prefix + b"/" + name if prefix else name,
        linkname=_text(block[157:257]),
        typeflag=block[156:157],
        mode=_number(block[100:108]),
        size=_number(block[124:136]),
        mtime=_number(block[136:148]),
    )


def _pax_records(data: bytes) -> dict[str, bytes]:
    """A pax extended header's `LENGTH KEY=VALUE\\n` records; refuses anything else
    and a key given twice."""
    records: dict[str, bytes] = {}
    at = 0
    while at < len(data):
        space = data.find(b" ", at, at + 20)
        length = data[at:space]
        if space < 0 or not length.isdigit():
            _refuse("corrupt", "a malformed pax extended header")
        end = at + int(length)
        record = data[space + 1 : end]
        key, equals, value = record.partition(b"=")
        bad = end > len(data) or end <= space or not key or not equals
        if bad or not record.endswith(b"\n"):
            _refuse("corrupt", "a malformed pax extended header")
        try:
            keyword = key.decode()
        except UnicodeDecodeError:
            _refuse("corrupt", "a malformed pax extended header")
        if keyword in records:
            _refuse("corrupt", "a pax extended header that sets one key twice")
        records[keyword] = value[:-1]
        at = end
    return records


@dataclass(slots=True)
class _Extended:
    """The extended headers met before a member: at most one of each kind."""

    pax: dict[str, bytes] | None = None
    longname: bytes | None = None
    longlink: bytes | None = None

    def pending(self) -> bool:
        return self.pax is not None or self.longname is not None or self.longlink is not None


def _decimal(value: bytes, what: str) -> int:
    """A pax number (`size`, `mtime`: seconds, maybe negative or with a fraction)."""
    whole = value.split(b".", 1)[0]
    if not re.fullmatch(rb"-?[0-9]+", whole):
        _refuse("corrupt", f"a pax extended header with a malformed {what}")
    return int(whole)


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _TarReader:
    """Reads a tar stream block by block into the tree (REL-20, REL-27)."""

    def __init__(self, stream: _Stream, tree: _Tree) -> None:
        self._stream = stream
        self._tree = tree

    def read(self) -> None:
        first = self._exact(_BLOCK, allow_short=True)
        if not _is_tar_block(first):
            _refuse("not_an_archive", "not a tar, tar.gz or zip archive")
        block = first
        while block != _ZERO_BLOCK:
            self._member(block)
            block = self._exact(_BLOCK)
        self._trailing()

    def _trailing(self) -> None:
        """Only zeros may follow the end marker (an archive appended would otherwise be
        dropped unseen); read to the end, so a gzip's checksum is checked too."""
        while chunk := self._stream.read(_CHUNK):
            self._tree.charge(len(chunk))
            if chunk.strip(b"\x00"):
                _refuse("corrupt", "data after the end of the tar archive")

    def _exact(self, size: int, allow_short: bool = False) -> bytes:
        data = self._stream.read(size)
        while len(data) < size:
            more = self._stream.read(size - len(data))
            if not more:
                if allow_short:
                    return data
                _refuse("corrupt", "the archive ends in the middle of an entry")
            data += more
        return data

    def _skip_padding(self, size: int) -> None:
        self._exact(-size % _BLOCK)

    def _extended_data(self, header: _Header) -> bytes:
        if header.size > _EXTENDED_MAX:
            _refuse("unsupported_entry", f"an extended header larger than {_EXTENDED_MAX} bytes")
        self._tree.charge(header.size)
        data = self._exact(header.size)
        self._skip_padding(header.size)
        return data

    def _member(self, block: bytes) -> None:
        """One member with the extended headers before it; `block` is its first header."""
        extended = _Extended()
        header = _header(block)
        while header.typeflag in (b"x", b"X", b"L", b"K", b"g"):
            self._extended(header, extended)
            header = _header(self._exact(_BLOCK))
        self._tree.count()
        name, linkname, size, mtime = self._apply(header, extended)
        kind = _tar_kind(header.typeflag, name)
        if kind != "file" and size:
            _refuse("corrupt", "a directory or symlink with content", name)
        target = linkname if kind == "link" else ""  # a link name on anything else means nothing
        entry = self._tree.add(name, kind, bool(header.mode & 0o111), _mtime(mtime), target)
        if kind == "file":
            self._tree.fits(size, name)
            left = size
            while left:
                chunk = self._exact(min(left, _CHUNK))
                self._tree.content(entry, chunk)
                left -= len(chunk)
            self._skip_padding(size)

    def _extended(self, header: _Header, extended: _Extended) -> None:
        if header.typeflag == b"g":  # global: git's commit id; nothing we keep
            if extended.pending():
                _refuse("corrupt", "a global header between a member and its extended header")
            self._tree.count()
            self._extended_data(header)
            return
        data = self._extended_data(header)
        if header.typeflag in (b"x", b"X"):
            if extended.pax is not None:
                _refuse("corrupt", "two pax extended headers for one member")
            extended.pax = _pax_records(data)
            return
        name, _, rest = data.partition(b"\x00")
        if rest.strip(b"\x00"):
            _refuse("corrupt", "a GNU long name with bytes after its end")
        if header.typeflag == b"L":
            if extended.longname is not None:
                _refuse("corrupt", "two GNU long names for one member")
            extended.longname = name
        else:
            if extended.longlink is not None:
                _refuse("corrupt", "two GNU long link names for one member")
            extended.longlink = name

    @staticmethod
    def _apply(header: _Header, extended: _Extended) -> tuple[str, str, int, int]:
        """The member's name, link target, size and mtime, its extended headers applied."""
        pax = extended.pax or {}
        if any(key.startswith("GNU.sparse.") for key in pax):
            _refuse("unsupported_entry", "a sparse file", _decoded(pax.get("path", header.name)))
        if "path" in pax and extended.longname is not None:
            _refuse("corrupt", "a member named by both a pax header and a GNU long name")
        if "linkpath" in pax and extended.longlink is not None:
            _refuse("corrupt", "a link target given by both a pax header and a GNU long name")
        name = pax.get("path", extended.longname or header.name)
        linkname = pax.get("linkpath", extended.longlink or header.linkname)
        size = _decimal(pax["size"], "size") if "size" in pax else header.size
        mtime = _decimal(pax["mtime"], "mtime") if "mtime" in pax else header.mtime
        if size < 0:
            _refuse("corrupt", "a tar header with a negative size")
        return _decoded(name), _decoded(linkname), size, mtime


def _decoded(raw: bytes) -> str:
    """UTF-8, with bytes that are not kept as lone surrogates (refused as `bad_name`)."""
    return raw.decode("utf-8", "surrogateescape")


def _tar_kind(typeflag: bytes, name: str) -> Kind:
    if typeflag in (b"0", b"7") or (typeflag == b"\x00" and not name.endswith("/")):
        return "file"
    if typeflag in (b"5", b"\x00"):
        return "dir"
    if typeflag == b"2":
        return "link"
    if typeflag == b"1":
        _refuse("hard_link", "a hard link", name)
    if typeflag in (b"3", b"4", b"6"):
        _refuse("special_file", "a device file or a FIFO", name)
    if typeflag == b"S":
        _refuse("unsupported_entry", "a sparse file", name)
    _refuse("unsupported_entry", "a tar entry of an unsupported type", name)


def _read_tar(source: Path, compressed: bool, tree: _Tree) -> None:
    with source.open("rb") as raw:
        if not compressed:
            _TarReader(raw, tree).read()
            return
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                _TarReader(stream, tree).read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ArchiveRefused("corrupt", "the gzip stream is damaged") from error


# -- zip -----------------------------------------------------------------------------

_EOCD: Final = b"PK\x05\x06"
_EOCD_SIZE: Final = 22
_ZIP64_LOCATOR: Final = b"PK\x06\x07"
_ZIP64_EOCD: Final = b"PK\x06\x06"
_CENTRAL_HEADER: Final = b"PK\x01\x02"
#: Bytes a central directory may average per allowed entry (a record is 46 bytes and
#: a name; real ones average under 200).
_CENTRAL_PER_ENTRY: Final = 1024


def _central_directory(raw: IO[bytes]) -> tuple[int, int]:
    """Where the central directory starts and its size, found as `zipfile` finds them
    (the end record without a comment, else the last one; zip64's when its locator
    precedes it)."""
    size = raw.seek(0, os.SEEK_END)
    window = min(size, _EOCD_SIZE + 65536)
    raw.seek(size - window)
    tail = raw.read(window)
    if tail[-_EOCD_SIZE:][:4] == _EOCD and tail[-2:] == b"\x00\x00":
        at = len(tail) - _EOCD_SIZE
    else:
        at = tail.rfind(_EOCD)
        if at < 0 or at + _EOCD_SIZE > len(tail):
            _refuse("corrupt", "a zip without its end of central directory")
    end = size - window + at
    (cd_size,) = struct.unpack_from("<I", tail, at + 12)
    if end >= 76:
        raw.seek(end - 20)
        if raw.read(4) == _ZIP64_LOCATOR:
            raw.seek(end - 76)
            record = raw.read(56)
            if record[:4] == _ZIP64_EOCD:
                (cd_size,) = struct.unpack_from("<Q", record, 40)
                end -= 76
    if cd_size > end:
        _refuse("corrupt", "a zip whose central directory lies before its start")
    return end - cd_size, cd_size


def _check_zip_index(source: Path, limits: Limits) -> None:
    """Bounds what `zipfile` reads into memory before it reads it: the central
    directory's size, and its records counted as `zipfile` will walk them."""
    with source.open("rb") as raw:
        start, size = _central_directory(raw)
        most = max(limits.max_entries * _CENTRAL_PER_ENTRY, MiB)
        if size > most:
            _refuse("too_large", f"a zip central directory larger than {most} bytes")
        raw.seek(start)
        walked = count = 0
        while walked < size:
            record = raw.read(46)
            if len(record) != 46 or record[:4] != _CENTRAL_HEADER:
                _refuse("corrupt", "a damaged zip central directory")
            count += 1
            if count > limits.max_entries:
                _refuse("too_many_entries", f"more than {limits.max_entries} entries")
            variable = sum(struct.unpack_from("<HHH", record, 28))
            walked += 46 + variable
            raw.seek(variable, os.SEEK_CUR)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's whole name (`filename` stops at a NUL); one without the UTF-8 flag is
    UTF-8 when it decodes as such (macOS and most tools), else code page 437."""
    name = info.orig_filename
    if not info.flag_bits & 0x800:
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return name


def _zip_kind(info: zipfile.ZipInfo, name: str) -> Kind:
    """From the unix mode in `external_attr >> 16` when it gives a type, else a
    trailing `/` makes a directory."""
    kind = stat.S_IFMT(info.external_attr >> 16)
    if name.endswith("/"):
        if kind not in (0, stat.S_IFDIR):
            _refuse("bad_name", "a file or symlink named like a directory", name)
        return "dir"
    if kind == stat.S_IFDIR:
        return "dir"
    if kind == stat.S_IFLNK:
        return "link"
    if kind in (0, stat.S_IFREG):
        return "file"
    if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        _refuse("special_file", "a device file, a FIFO or a socket", name)
    _refuse("unsupported_entry", "a zip entry of an unsupported type", name)


def _zip_mtime(info: zipfile.ZipInfo) -> int:
    """The extended timestamp (Info-ZIP's `UT` field: git and zip write it) when there
    is one, else the MS-DOS time read as UTC."""
    extra, at = info.extra, 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + size]
        if tag == 0x5455 and len(body) >= 5 and body[0] & 1:
            return _mtime(struct.unpack_from("<i", body, 1)[0])
        at += 4 + size
    try:
        return _mtime(calendar.timegm((*info.date_time, 0, 0, 0)))
    except ValueError:
        return 0


class _ZipReader:
    """Reads a zip's entries, in central-directory order, into the tree (REL-20)."""

    def __init__(self, archive: zipfile.ZipFile, tree: _Tree) -> None:
        self._archive = archive
        self._tree = tree

    def read(self) -> None:
        for info in self._archive.infolist():
            self._member(info)

    def _member(self, info: zipfile.ZipInfo) -> None:
        self._tree.count()
        name = _zip_name(info)
        kind = _zip_kind(info, name)
        if info.flag_bits & 0x1:
            _refuse("unsupported_entry", "an encrypted zip entry", name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            _refuse("unsupported_entry", "a zip entry compressed other than by deflate", name)
        executable = bool((info.external_attr >> 16) & 0o111)
        mtime = _zip_mtime(info)
        if kind == "dir":
            if info.file_size:
                _refuse("corrupt", "a zip directory with content", name)
            self._tree.add(name, kind, executable, mtime)
        elif kind == "link":
            self._tree.add(name, kind, executable, mtime, self._link_target(info, name))
        else:
            entry = self._tree.add(name, kind, executable, mtime)
            self._tree.fits(info.file_size, name)
            with self._archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    self._tree.content(entry, chunk)
            if entry.size != info.file_size:
                _refuse("corrupt", "a zip entry whose content differs from its size", name)

    def _link_target(self, info: zipfile.ZipInfo, name: str) -> str:
        most = self._tree.limits.max_path
        if info.file_size > most:
            _refuse("path_too_long", f"a symlink target longer than {most} bytes", name)
        with self._archive.open(info) as member:
            target = member.read(most + 1)
        if len(target) != info.file_size:
            _refuse("corrupt", "a zip entry whose content differs from its size", name)
        return _decoded(target)


def _read_zip(source: Path, tree: _Tree) -> None:
    _check_zip_index(source, tree.limits)
    try:
        with zipfile.ZipFile(source) as archive:
            _ZipReader(archive, tree).read()
    except (zipfile.BadZipFile, EOFError, zlib.error) as error:
        raise ArchiveRefused("corrupt", "the zip archive is damaged") from error


# -- which entries are deployed ------------------------------------------------------


def _is_tooling(component: str) -> bool:
    """Repository tooling and macOS's resource forks: never deployed."""
    return component.startswith(".") or component == "__MACOSX"


def _root(tree: dict[tuple[str, ...], _Entry]) -> tuple[str, ...]:
    """Where `wp-content`'s level is in the archive (REL-21): the top, when a code
    directory is there; else `wp-content/`; else the same inside the one directory
    that holds everything (GitHub's tarballs, `git archive --prefix`)."""
    tops: dict[str, set[str]] = {}
    for parts in tree:
        if not _is_tooling(parts[0]):
            below = tops.setdefault(parts[0], set())
            if len(parts) > 1:
                below.add(parts[1])
    if tops.keys() & CODE_DIRS:
        return ()
    if "wp-content" in tops:
        return ("wp-content",)
    if len(tops) == 1:
        ((wrapper, inside),) = tops.items()
        if inside & CODE_DIRS:
            return (wrapper,)
        if "wp-content" in inside:
            return (wrapper, "wp-content")
    _refuse(
        "no_wp_content_code",
        "no themes/, plugins/ or mu-plugins/ at the top, in wp-content/ or in one enclosing"
        " directory",
    )


@dataclass(slots=True)
class _Sorted:
    deployed: dict[tuple[str, ...], _Entry]
    ignored: set[str]
    ignored_entries: int = 0


def _sort_out(tree: dict[tuple[str, ...], _Entry], root: tuple[str, ...]) -> _Sorted:
    """Each entry deployed (its path under `wp-content`), ignored, or refused (REL-22)."""
    result = _Sorted({}, set())
    for parts, entry in tree.items():
        shared = 0
        while shared < min(len(parts), len(root)) and parts[shared] == root[shared]:
            shared += 1
        if shared == len(parts):  # the enclosing directory or wp-content/ itself
            continue
        rest = parts[shared:]
        if shared == len(root) and rest[0] in CODE_DIRS:
            if len(rest) == 1 and entry.kind != "dir":
                _refuse("path_conflict", "a code directory that is not a directory", entry.name)
            result.deployed[rest] = entry
        elif _is_tooling(rest[0]) or (len(rest) == 1 and entry.kind != "dir"):
            result.ignored.add("/".join(parts[: shared + 1]))
            result.ignored_entries += 1
        else:
            _refuse(
                "outside_wp_content_code",
                "an entry outside themes/, plugins/ and mu-plugins/",
                entry.name,
            )
    return result


def _check_conflicts(ordered: list[tuple[str, ...]], tree: dict[tuple[str, ...], _Entry]) -> None:
    """No entry inside a path the archive makes a file or a symlink (REL-25): sorted,
    a path's descendants follow it at once."""
    for above, below in pairwise(ordered):
        if tree[above].kind != "dir" and below[: len(above)] == above:
            _refuse("path_conflict", "an entry inside a file or symlink", tree[below].name)


def _directories(
    deployed: dict[tuple[str, ...], _Entry], ordered: list[tuple[str, ...]], limits: Limits
) -> set[tuple[str, ...]]:
    """The directories the deployed entries imply without an entry of their own; the
    normalised tar holds them too, so they count against `max_entries`."""
    implied: set[tuple[str, ...]] = set()
    for parts in ordered:
        for depth in range(len(parts) - 1, 0, -1):
            parent = parts[:depth]
            if parent in deployed or parent in implied:
                break
            implied.add(parent)
        if len(deployed) + len(implied) > limits.max_entries:
            _refuse("too_many_entries", f"more than {limits.max_entries} entries with directories")
    return implied


class _Links:
    """Resolves each deployed symlink through the deployed tree, following the
    archive's other symlinks as the node will (REL-25): it must reach an entry the
    archive deploys (or a directory they imply) in a code directory."""

    def __init__(self, deployed: dict[tuple[str, ...], _Entry], dirs: set[tuple[str, ...]]):
        self._deployed = deployed
        self._dirs = dirs
        self._resolved: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._open: set[tuple[str, ...]] = set()

    def check(self) -> None:
        for parts, entry in self._deployed.items():
            if entry.kind == "link":
                self._resolve(parts, entry, 0)

    def _is_dir(self, parts: tuple[str, ...]) -> bool:
        entry = self._deployed.get(parts)
        return parts in self._dirs or (entry is not None and entry.kind == "dir")

    def _resolve(self, parts: tuple[str, ...], entry: _Entry, depth: int) -> tuple[str, ...]:
        done = self._resolved.get(parts)
        if done is not None:
            return done
        if parts in self._open or depth >= _LINK_DEPTH:
            _refuse("link_loop", "a symlink that loops or passes through too many", entry.name)
        if entry.target.startswith("/"):
            _refuse("link_outside", "a symlink to an absolute path", entry.name)
        self._open.add(parts)
        where = parts[:-1]
        for step in entry.target.split("/"):
            if step in ("", "."):
                continue
            if where and not self._is_dir(where):
                _refuse("link_outside", "a symlink through a file", entry.name)
            if step == "..":
                if not where:
                    _refuse("link_outside", "a symlink that leaves wp-content", entry.name)
                where = where[:-1]
                continue
            where = (*where, step)
            found = self._deployed.get(where)
            if found is not None and found.kind == "link":
                where = self._resolve(where, found, depth + 1)
            elif found is None and where not in self._dirs:
                _refuse(
                    "link_outside", "a symlink to a path the archive does not deploy", entry.name
                )
        if not where or where[0] not in CODE_DIRS:
            _refuse(
                "link_outside", "a symlink out of themes/, plugins/ and mu-plugins/", entry.name
            )
        self._open.discard(parts)
        self._resolved[parts] = where
        return where


# -- the normalised tar ---------------------------------------------------------------


class _Hashed:
    """The target file as `tarfile` writes it, hashed on the way."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._at = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.digest.update(data)
        self._at += len(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self._at

    def read(self, size: int, /) -> bytes:
        raise io.UnsupportedOperation("write only")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("write only")

    def close(self) -> None:
        """The caller closes the file."""


def _directory_times(
    ordered: list[tuple[str, ...]], deployed: dict[tuple[str, ...], _Entry]
) -> dict[tuple[str, ...], int]:
    """A directory's mtime is the newest below it (an empty one keeps its own), so an
    archive with directory entries and one without normalise alike."""
    newest: dict[tuple[str, ...], int] = {}
    for parts in reversed(ordered):
        entry = deployed.get(parts)
        own = newest.get(parts, entry.mtime if entry is not None else 0)
        if len(parts) > 1:
            parent = parts[:-1]
            newest[parent] = max(newest.get(parent, own), own)
    return newest


def _tar_infos(
    ordered: list[tuple[str, ...]], deployed: dict[tuple[str, ...], _Entry]
) -> Iterator[tuple[tarfile.TarInfo, _Entry | None]]:
    """The normalised tar's headers, sorted: owned by root, no owner names, files
    0644 or 0755, directories 0755, mtimes kept (REL-28)."""
    times = _directory_times(ordered, deployed)
    for parts in ordered:
        entry = deployed.get(parts)
        info = tarfile.TarInfo("/".join(parts))
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if entry is None or entry.kind == "dir":
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            info.mtime = times.get(parts, entry.mtime if entry is not None else 0)
        elif entry.kind == "link":
            info.type, info.mode, info.mtime = tarfile.SYMTYPE, 0o777, entry.mtime
            info.linkname = entry.target
        else:
            info.type, info.mtime, info.size = tarfile.REGTYPE, entry.mtime, entry.size
            info.mode = 0o755 if entry.executable else 0o644
        yield info, entry


def _write_tar(
    raw: IO[bytes],
    ordered: list[tuple[str, ...]],
    deployed: dict[tuple[str, ...], _Entry],
    spool: IO[bytes],
) -> str:
    """Writes the normalised tar (PAX: long and non-ASCII names exact) and returns its
    SHA-256."""
    hashed = _Hashed(raw)
    with tarfile.open(fileobj=hashed, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for info, entry in _tar_infos(ordered, deployed):
            if entry is not None and entry.kind == "file":
                spool.seek(entry.offset)
                tar.addfile(info, spool)
            else:
                tar.addfile(info)
    return hashed.digest.hexdigest()


# -- the one entry point -------------------------------------------------------------


def _format(source: Path) -> Format:
    """Told by content, never by name."""
    with source.open("rb") as raw:
        head = raw.read(_BLOCK)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:4] in (b"PK\x03\x04", _EOCD):
        return "zip"
    if _is_tar_block(head):
        return "tar"
    _refuse("not_an_archive", "not a tar, tar.gz or zip archive")


def check_archive(source: Path, target: Path, limits: Limits = LIMITS) -> Checked:
    """Checks the archive at `source` and writes its normalised tar to `target` (which
    must not exist; a scratch directory's file), or raises `ArchiveRefused` leaving
    no target. The spool (as large as the content, at most `max_bytes`) is an
    anonymous file in the target's directory."""
    kind = _format(source)
    with tempfile.TemporaryFile(dir=target.parent) as spool:
        tree = _Tree(limits, spool)
        if kind == "zip":
            _read_zip(source, tree)
        else:
            _read_tar(source, kind == "tar.gz", tree)
        everything = sorted(tree.entries)
        _check_conflicts(everything, tree.entries)
        found = _sort_out(tree.entries, _root(tree.entries))
        deployed = found.deployed
        items = sorted({"/".join(parts[:2]) for parts in deployed if len(parts) > 1})
        if not items:
            _refuse("no_wp_content_code", "nothing in themes/, plugins/ or mu-plugins/")
        implied = _directories(deployed, sorted(deployed), limits)
        _Links(deployed, implied).check()
        ordered = sorted([*deployed, *implied])
        with target.open("xb") as raw:  # never over a file of someone else's
            try:
                sha256 = _write_tar(raw, ordered, deployed, spool)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
    files = [entry for entry in deployed.values() if entry.kind == "file"]
    return Checked(
        tar=target,
        summary=Summary(
            format=kind,
            items=tuple(items),
            files=len(files),
            total_bytes=sum(entry.size for entry in files),
            sha256=sha256,
            ignored=tuple(sorted(found.ignored)[:_IGNORED_SHOWN]),
            ignored_entries=found.ignored_entries,
        ),
    )
