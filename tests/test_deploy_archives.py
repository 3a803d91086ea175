"""The archive checks of a code deploy (specs/releases.md, REL-20…29), on archives the
tests build with tarfile, zipfile, gzip and git — the malicious ones by hand."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import stat
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pressluft.contexts.releases.archives import (
    CODE_DIRS,
    LIMITS,
    REASONS,
    ArchiveRefused,
    Checked,
    Limits,
    check_archive,
)

MiB = 1024 * 1024
MTIME = 1_700_000_000  # even: a zip's MS-DOS time keeps it
NEWER = MTIME + 3600


@dataclass(frozen=True)
class E:
    """One entry of an archive the tests build: a file, a directory or a symlink."""

    name: str
    data: bytes = b""
    link: str | None = None
    directory: bool = False
    mode: int = 0o644
    mtime: int = MTIME


GOOD = [
    E("themes/", directory=True, mode=0o755),
    E("themes/bar/", directory=True, mode=0o755),
    E("themes/bar/style.css", b"/* Theme Name: Bar */\n"),
    E("themes/bar/functions.php", b"<?php // bar\n", mtime=NEWER),
    E("themes/bar/footer.php", b"", link="../../plugins/foo/templates/footer.php"),
    E("plugins/", directory=True, mode=0o755),
    E("plugins/foo/", directory=True, mode=0o755),
    E("plugins/foo/foo.php", b"<?php /* Plugin Name: Foo */\n"),
    E("plugins/foo/bin/", directory=True, mode=0o755),
    E("plugins/foo/bin/run", b"#!/bin/sh\necho run\n", mode=0o755),
    E("plugins/foo/templates/", directory=True, mode=0o755),
    E("plugins/foo/templates/footer.php", b"<footer></footer>\n"),
    E("plugins/hello.php", b"<?php /* Plugin Name: Hello */\n"),
    E("mu-plugins/", directory=True, mode=0o755),
    E("mu-plugins/loader.php", b"<?php require __DIR__ . '/../plugins/foo/foo.php';\n"),
]
GOOD_FILES = {e.name: e.data for e in GOOD if not e.directory and e.link is None}


# -- building archives ------------------------------------------------------------------


def tar_info(e: E) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.name)
    info.mode, info.mtime = e.mode, e.mtime
    if e.directory:
        info.type = tarfile.DIRTYPE
    elif e.link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, e.link
    else:
        info.size = len(e.data)
    return info


def zip_info(e: E) -> zipfile.ZipInfo:
    name = e.name if not e.directory or e.name.endswith("/") else e.name + "/"
    info = zipfile.ZipInfo(name, date_time=time.gmtime(e.mtime)[:6])
    info.create_system = 3
    kind = stat.S_IFDIR if e.directory else stat.S_IFLNK if e.link is not None else stat.S_IFREG
    info.external_attr = (kind | e.mode) << 16
    info.compress_type = zipfile.ZIP_STORED if e.directory else zipfile.ZIP_DEFLATED
    return info


def write_tar(
    path: Path, entries: list[E], *, gz: bool = False, fmt: int = tarfile.PAX_FORMAT
) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=fmt) as tar:
        for e in entries:
            info = tar_info(e)
            tar.addfile(info, io.BytesIO(e.data) if info.isreg() else None)
    return path


def write_zip(path: Path, entries: list[E]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for e in entries:
            data = e.link.encode() if e.link is not None else e.data
            archive.writestr(zip_info(e), data)
    return path


def write(path: Path, kind: str, entries: list[E]) -> Path:
    if kind == "zip":
        return write_zip(path, entries)
    return write_tar(path, entries, gz=kind == "tar.gz")


def prefixed(prefix: str, entries: list[E]) -> list[E]:
    return [E(prefix + e.name, e.data, e.link, e.directory, e.mode, e.mtime) for e in entries]


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def pax_header(*records: tuple[str, bytes], kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A pax extended header, written by hand (tarfile would not write a bad one)."""
    body = b""
    for key, value in records:
        payload = b" " + key.encode() + b"=" + value + b"\n"
        length = len(payload) + 1
        while len(str(length)) + len(payload) != length:
            length = len(str(length)) + len(payload)
        body += str(length).encode() + payload
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = kind, len(body)
    return info.tobuf(tarfile.USTAR_FORMAT) + padded(body)


def member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = ""
) -> bytes:
    """One tar member as bytes (its header in USTAR or GNU form, its padded content)."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, linkname, MTIME
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    fmt = tarfile.GNU_FORMAT if len(name) > 100 else tarfile.USTAR_FORMAT
    return info.tobuf(fmt, "utf-8", "surrogateescape") + padded(data)


def raw_tar(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts) + bytes(1024))
    return path


def fix_checksum(block: bytearray) -> bytearray:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return block


# -- checking -----------------------------------------------------------------------------


def check(tmp_path: Path, source: Path, limits: Limits = LIMITS) -> Checked:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return check_archive(source, out / f"{uuid.uuid4().hex}.tar", limits)


def refusal(tmp_path: Path, source: Path, limits: Limits = LIMITS) -> ArchiveRefused:
    out = tmp_path / "refused"
    out.mkdir(exist_ok=True)
    with pytest.raises(ArchiveRefused) as caught:
        check_archive(source, out / "normalised.tar", limits)
    assert caught.value.reason in REASONS
    assert list(out.iterdir()) == [], "a refused archive leaves nothing behind"
    return caught.value


def refused(tmp_path: Path, source: Path, reason: str, limits: Limits = LIMITS) -> ArchiveRefused:
    refusal_ = refusal(tmp_path, source, limits)
    assert refusal_.reason == reason, refusal_
    return refusal_


@dataclass(frozen=True)
class Out:
    name: str
    type: bytes
    mode: int
    mtime: int
    linkname: str
    data: bytes
    owner: tuple[int, int, str, str]


def contents(checked: Checked) -> list[Out]:
    with tarfile.open(checked.tar) as tar:
        found = []
        for m in tar:
            content = tar.extractfile(m) if m.isreg() else None
            data = content.read() if content is not None else b""
            owner = (m.uid, m.gid, m.uname, m.gname)
            found.append(Out(m.name, m.type, m.mode, m.mtime, m.linkname, data, owner))
        return found


def files_of(checked: Checked) -> dict[str, bytes]:
    return {o.name: o.data for o in contents(checked) if o.type == tarfile.REGTYPE}


# -- REL-20 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-20")
def test_the_format_is_told_by_content_and_each_gives_the_same_tar(tmp_path: Path) -> None:
    # Each file is named as another format: the name never decides.
    checked = {
        kind: check(tmp_path, write(tmp_path / name, kind, GOOD))
        for kind, name in (("tar", "a.zip"), ("tar.gz", "b.tar"), ("zip", "c.tar.gz"))
    }
    assert {kind: c.summary.format for kind, c in checked.items()} == {
        "tar": "tar",
        "tar.gz": "tar.gz",
        "zip": "zip",
    }
    assert len({c.summary.sha256 for c in checked.values()}) == 1
    assert files_of(checked["zip"]) == GOOD_FILES


@pytest.mark.spec("REL-20")
def test_gnu_and_ustar_headers_read_like_pax(tmp_path: Path) -> None:
    long_dir = "plugins/foo/" + "d" * 120 + "/"
    entries = [*GOOD, E(long_dir, directory=True), E(long_dir + "x.php", b"<?php\n")]
    entries += [E("plugins/foo/far.php", link="../foo/" + "d" * 120 + "/x.php")]
    shas = {
        check(tmp_path, write_tar(tmp_path / f"{fmt}.tar", entries, fmt=fmt)).summary.sha256
        for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT)
    }
    assert len(shas) == 1
    split = [*GOOD, E("plugins/foo/" + "s" * 80 + "/" + "t" * 60 + ".php", b"x")]
    pax = check(tmp_path, write_tar(tmp_path / "p.tar", split)).summary.sha256
    ustar = write_tar(tmp_path / "u.tar", split, fmt=tarfile.USTAR_FORMAT)  # prefix field
    assert check(tmp_path, ustar).summary.sha256 == pax


def _v7_tar(path: Path) -> Path:
    block = bytearray(member("plugins/a.php", b"x"))
    block[257:265] = bytes(8)
    return raw_tar(path, bytes(fix_checksum(block)))


@pytest.mark.spec("REL-20")
@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"<?php echo 'not an archive';\n" * 40),
        lambda p: p.write_bytes(gzip.compress(b"just text, no tar")),
        lambda p: p.write_bytes(bz2.compress(write_tar(p, GOOD).read_bytes())),
        lambda p: p.write_bytes(lzma.compress(write_tar(p, GOOD).read_bytes())),
        _v7_tar,
    ],
    ids=["empty", "text", "gzip-of-text", "bzip2-tar", "xz-tar", "v7-tar"],
)
def test_what_is_not_an_archive_is_refused(tmp_path: Path, make: Callable[[Path], object]) -> None:
    path = tmp_path / "upload"
    make(path)
    assert refused(tmp_path, path, "not_an_archive").path is None


def _break_second_header(path: Path) -> Path:
    raw = bytearray(write_tar(path, GOOD, fmt=tarfile.USTAR_FORMAT).read_bytes())
    raw[512 + 10] ^= 0x01  # the second member's name: its checksum no longer matches
    path.write_bytes(bytes(raw))
    return path


def _cut(path: Path, kind: str, keep: float) -> Path:
    data = write(path, kind, GOOD).read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _appended(path: Path) -> Path:
    one = write_tar(path, GOOD).read_bytes()
    other = write_tar(path, [E("plugins/evil.php", b"<?php evil();")]).read_bytes()
    path.write_bytes(one + other)
    return path


def _zip_content_changed(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:  # stored: the content is plain in the file
        archive.writestr(zipfile.ZipInfo("plugins/a.php"), b"A" * 64)
    path.write_bytes(path.read_bytes().replace(b"A" * 64, b"B" * 64))
    return path


@pytest.mark.spec("REL-20")
@pytest.mark.parametrize(
    "make",
    [
        _break_second_header,
        lambda p: _cut(p, "tar", 0.5),
        lambda p: _cut(p, "tar.gz", 0.8),
        lambda p: _cut(p, "zip", 0.9),
        _appended,
        _zip_content_changed,
        lambda p: raw_tar(p, pax_header(("path", b"plugins/a"), ("path", b"x")), member("b")),
        lambda p: raw_tar(p, pax_header(("path", b"a")), pax_header(("path", b"b")), member("c")),
        lambda p: raw_tar(p, pax_header(("path", b"plugins/a")) + bytes(1024)),
        lambda p: raw_tar(p, pax_header(("mtime", b"soon")), member("plugins/a.php")),
    ],
    ids=[
        "second-header",
        "tar-cut",
        "gzip-cut",
        "zip-cut",
        "tar-appended",
        "zip-crc",
        "pax-key-twice",
        "two-pax-headers",
        "pax-then-end",
        "pax-bad-number",
    ],
)
def test_a_damaged_archive_is_refused_never_deployed_in_part(
    tmp_path: Path, make: Callable[[Path], object]
) -> None:
    path = tmp_path / "upload"
    make(path)
    refused(tmp_path, path, "corrupt")


def _zip_with(path: Path, name: str, *, flag: int = 0, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("plugins/ok.php", b"<?php")
        info = zipfile.ZipInfo(name)
        info.compress_type = method
        archive.writestr(info, b"<?php secret")
    if flag:
        raw = bytearray(path.read_bytes())
        for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            where = raw.rfind(signature)
            raw[where + at] |= flag
        path.write_bytes(bytes(raw))
    return path


@pytest.mark.spec("REL-20")
@pytest.mark.parametrize(
    ("make", "path"),
    [
        (lambda p: _zip_with(p, "plugins/enc.php", flag=0x1), "plugins/enc.php"),
        (lambda p: _zip_with(p, "plugins/b.php", method=zipfile.ZIP_BZIP2), "plugins/b.php"),
        (
            lambda p: raw_tar(p, member("plugins/sparse", kind=tarfile.GNUTYPE_SPARSE)),
            "plugins/sparse",
        ),
        (
            lambda p: raw_tar(p, pax_header(("GNU.sparse.major", b"1")), member("plugins/s")),
            "plugins/s",
        ),
        (lambda p: raw_tar(p, member("plugins/volume", kind=b"V")), "plugins/volume"),
        (lambda p: raw_tar(p, pax_header(("comment", b"c" * 70_000)), member("plugins/a")), None),
    ],
    ids=["zip-encrypted", "zip-bzip2", "sparse", "pax-sparse", "volume-label", "huge-pax"],
)
def test_entries_no_deploy_needs_are_unsupported(
    tmp_path: Path, make: Callable[[Path], object], path: str | None
) -> None:
    source = tmp_path / "upload"
    make(source)
    assert refused(tmp_path, source, "unsupported_entry").path == path


# -- REL-21 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-21")
@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize(
    "prefix", ["", "./", "wp-content/", "./wp-content/", "site-1a2b3c/", "site/wp-content/"]
)
def test_wp_content_level_is_found(tmp_path: Path, kind: str, prefix: str) -> None:
    baseline = check(tmp_path, write(tmp_path / "base", kind, GOOD)).summary.sha256
    entries = prefixed(prefix, GOOD)
    if prefix.startswith("site"):  # the enclosing directory's own entry, as git writes it
        entries.insert(0, E(prefix.split("/")[0] + "/", directory=True))
    checked = check(tmp_path, write(tmp_path / "prefixed", kind, entries))
    assert checked.summary.sha256 == baseline
    assert checked.summary.items == (
        "mu-plugins/loader.php",
        "plugins/foo",
        "plugins/hello.php",
        "themes/bar",
    )


@pytest.mark.spec("REL-21")
@pytest.mark.parametrize(
    "entries",
    [
        [E("akismet/akismet.php", b"<?php")],  # a plugin's own zip: where would it go?
        [E("a/b/plugins/x/x.php", b"<?php")],  # two levels down
        [E("a/plugins/x/x.php", b"<?php"), E("b/plugins/y/y.php", b"<?php")],  # two wrappers
        [E("plugins/", directory=True), E("themes/", directory=True)],  # nothing in them
        [E(".github/plugins/x.php", b"<?php")],  # tooling is never the level
    ],
    ids=["plugin-zip", "two-levels", "two-wrappers", "empty-code-dirs", "tooling"],
)
def test_an_archive_without_a_wp_content_level_is_refused(tmp_path: Path, entries: list[E]) -> None:
    refused(tmp_path, write_tar(tmp_path / "a.tar", entries), "no_wp_content_code")


# -- REL-22 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-22")
def test_tooling_and_loose_files_are_ignored_and_named(tmp_path: Path) -> None:
    entries = [
        E("site/", directory=True),
        E("site/README.md", b"# site"),
        E("site/composer.json", b"{}"),
        E("site/.github/workflows/ci.yml", b"on: push"),
        E("site/.github/l", link="/etc/passwd"),  # ignored with its directory, never followed
        E("site/wp-content/index.php", b"<?php // Silence is golden."),
        E("site/wp-content/object-cache.php", b"<?php // a drop-in of its own"),
        E("site/wp-content/wp-config.php", b"<?php define('DB_PASSWORD', 'x');"),
        E("site/wp-content/.gitignore", b"uploads/"),
        *prefixed("site/wp-content/", GOOD),
        E("__MACOSX/site/._README.md", b"\0\5\x16\7"),
    ]
    checked = check(tmp_path, write_zip(tmp_path / "a.zip", entries))
    assert checked.summary.ignored == (
        "__MACOSX",
        "site/.github",
        "site/README.md",
        "site/composer.json",
        "site/wp-content/.gitignore",
        "site/wp-content/index.php",
        "site/wp-content/object-cache.php",
        "site/wp-content/wp-config.php",
    )
    assert checked.summary.ignored_entries == 9
    assert files_of(checked) == GOOD_FILES


@pytest.mark.spec("REL-22")
@pytest.mark.parametrize(
    "name",
    [
        "uploads/2024/01/photo.jpg",
        "languages/de_DE.mo",
        "cache/page.html",
        "upgrade/x.zip",
        "docs/readme.md",
        "wp-content/plugins/x.php",  # wp-content/ beside plugins/: which is meant?
    ],
)
def test_other_directories_are_refused(tmp_path: Path, name: str) -> None:
    archive = write_tar(tmp_path / "a.tar", [*GOOD, E(name, b"x")])
    assert refused(tmp_path, archive, "outside_wp_content_code").path == name


@pytest.mark.spec("REL-22")
def test_a_wordpress_root_is_refused(tmp_path: Path) -> None:
    entries = [
        E("wp-config.php", b"<?php"),
        E("wp-admin/index.php", b"<?php"),
        *prefixed("wp-content/", GOOD),
    ]
    assert (
        refused(tmp_path, write_tar(tmp_path / "a.tar", entries), "outside_wp_content_code").path
        == "wp-admin/index.php"
    )


# -- REL-23 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-23")
@pytest.mark.parametrize(
    ("name", "reason", "shown"),
    [
        ("/etc/passwd", "absolute_path", None),
        ("../x.php", "parent_reference", None),
        ("plugins/../../x.php", "parent_reference", None),
        ("plugins/a/../b.php", "parent_reference", None),  # even when it would stay inside
        ("plugins/a\x1b[31m.php", "bad_name", "plugins/a\\x1b[31m.php"),
        ("plugins/a\\..\\..\\x.php", "bad_name", None),
        ("plugins/\udcff.php", "bad_name", "plugins/\\xff.php"),
        ("plugins/a/", "bad_name", None),  # a file named like a directory
        ("plugins/" + "a" * 256 + "/x.php", "path_too_long", None),
        ("plugins/" + "/".join(["d"] * 64) + "/x.php", "path_too_deep", None),
    ],
)
def test_names_that_could_land_elsewhere_are_refused(
    tmp_path: Path, name: str, reason: str, shown: str | None
) -> None:
    pax = pax_header(("path", name.encode("utf-8", "surrogateescape")))
    archive = raw_tar(
        tmp_path / "a.tar", member("plugins/ok.php", b"ok"), pax, member("x", b"data")
    )
    assert refused(tmp_path, archive, reason).path == (shown or name)


@pytest.mark.spec("REL-23")
def test_a_nul_and_an_empty_name_are_refused(tmp_path: Path) -> None:
    nul = raw_tar(tmp_path / "a.tar", pax_header(("path", b"plugins/a.php\x00.txt")), member("x"))
    assert refused(tmp_path, nul, "bad_name").path == "plugins/a.php\\x00.txt"
    empty = raw_tar(tmp_path / "b.tar", pax_header(("path", b"")), member("x"))
    assert refused(tmp_path, empty, "bad_name").path is None
    raw_name = raw_tar(tmp_path / "c.tar", member("plugins/\udcfe.php", b"x"))  # ustar bytes
    assert refused(tmp_path, raw_name, "bad_name").path == "plugins/\\xfe.php"


@pytest.mark.spec("REL-23")
def test_long_names_within_the_limit_pass_and_beyond_are_refused(tmp_path: Path) -> None:
    name = "plugins/" + "/".join(["n" * 200] * 20)
    archive = write_tar(tmp_path / "a.tar", [E(name, b"x")])
    assert files_of(check(tmp_path, archive)) == {name: b"x"}
    refusal_ = refused(tmp_path, archive, "path_too_long", Limits(max_path=2000))
    assert refusal_.path is not None and refusal_.path.endswith("…") and len(refusal_.path) == 513


@pytest.mark.spec("REL-23")
def test_names_that_differ_only_by_case_are_both_deployed(tmp_path: Path) -> None:
    entries = [E("plugins/Foo/a.php", b"upper"), E("plugins/foo/a.php", b"lower")]
    for kind in ("tar", "zip"):
        checked = check(tmp_path, write(tmp_path / kind, kind, entries))
        assert files_of(checked) == {"plugins/Foo/a.php": b"upper", "plugins/foo/a.php": b"lower"}
        assert checked.summary.items == ("plugins/Foo", "plugins/foo")


# -- REL-24 -------------------------------------------------------------------------------


def _zip_mode(path: Path, name: str, mode: int) -> Path:
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, mode << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("plugins/ok.php", b"<?php")
        archive.writestr(info, b"")
    return path


@pytest.mark.spec("REL-24")
@pytest.mark.parametrize(
    ("make", "reason", "path"),
    [
        (lambda p: raw_tar(p, member("plugins/a.php", b"x"), member("plugins/b.php", kind=tarfile.LNKTYPE, linkname="plugins/a.php")), "hard_link", "plugins/b.php"),
        (lambda p: raw_tar(p, member(".git/objects/x", kind=tarfile.LNKTYPE, linkname="/etc/shadow")), "hard_link", ".git/objects/x"),
        (lambda p: raw_tar(p, member("plugins/tty", kind=tarfile.CHRTYPE)), "special_file", "plugins/tty"),
        (lambda p: raw_tar(p, member("plugins/sda", kind=tarfile.BLKTYPE)), "special_file", "plugins/sda"),
        (lambda p: raw_tar(p, member("plugins/fifo", kind=tarfile.FIFOTYPE)), "special_file", "plugins/fifo"),
        (lambda p: _zip_mode(p, "plugins/fifo", stat.S_IFIFO | 0o644), "special_file", "plugins/fifo"),
        (lambda p: _zip_mode(p, "plugins/tty", stat.S_IFCHR | 0o644), "special_file", "plugins/tty"),
        (lambda p: _zip_mode(p, "plugins/sock", stat.S_IFSOCK | 0o644), "special_file", "plugins/sock"),
    ],
    ids=["hard-link", "hard-link-ignored-place", "char-device", "block-device", "fifo", "zip-fifo", "zip-char-device", "zip-socket"],
)  # fmt: skip
def test_only_files_directories_and_symlinks(
    tmp_path: Path, make: Callable[[Path], object], reason: str, path: str
) -> None:
    source = tmp_path / "upload"
    make(source)
    assert refused(tmp_path, source, reason).path == path


# -- REL-25 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-25")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_symlinks_inside_the_deployed_code_are_kept(tmp_path: Path, kind: str) -> None:
    entries = [
        *GOOD,
        E("plugins/foo/inc/", directory=True),
        E("plugins/foo/inc/a.php", b"<?php"),
        E("plugins/foo/lib", link="inc"),  # to a directory
        E("plugins/foo/lib-a.php", link="lib/a.php"),  # through another link
        E("mu-plugins/foo.php", link="../plugins/foo/foo.php"),
        E("plugins/foo/self", link="."),
    ]
    links = {
        o.name: o.linkname
        for o in contents(check(tmp_path, write(tmp_path / "a", kind, entries)))
        if o.linkname
    }
    assert links == {
        "mu-plugins/foo.php": "../plugins/foo/foo.php",
        "plugins/foo/lib": "inc",
        "plugins/foo/lib-a.php": "lib/a.php",
        "plugins/foo/self": ".",
        "themes/bar/footer.php": "../../plugins/foo/templates/footer.php",
    }


@pytest.mark.spec("REL-25")
@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ([E("plugins/foo/passwd", link="/etc/passwd")], "link_outside"),
        ([E("plugins/foo/etc", link="../../../../etc")], "link_outside"),
        ([E("plugins/foo/config.txt", link="../../../wp-config.php")], "link_outside"),
        ([E("plugins/foo/up", link="../../uploads")], "link_outside"),
        ([E("plugins/foo/root", link="../..")], "link_outside"),  # wp-content itself
        ([E("plugins/foo/other", link="../other/x.php")], "link_outside"),  # not deployed
        ([E("plugins/foo/through", link="foo.php/x")], "link_outside"),  # through a file
        # Lexically `plugins/uploads` (which exists); followed, `up` is themes/, so `../..`
        # leaves wp-content: the node would follow it, so must the check.
        ([E("plugins/uploads/x.php", b"x"), E("plugins/foo/up", link="../../themes"),
          E("plugins/foo/esc", link="up/../../uploads")], "link_outside"),
        ([E("plugins/foo/a", link="b"), E("plugins/foo/b", link="a")], "link_loop"),
        ([E("plugins/foo/me", link="me")], "link_loop"),
        ([E(f"plugins/foo/l{n}", link=f"l{n + 1}") for n in range(41)]
         + [E("plugins/foo/l41", link="foo.php")], "link_loop"),
        ([E("plugins/x", link="../themes/bar"), E("plugins/x/evil.php", b"<?php")], "path_conflict"),
        ([E("plugins/f.php", b"<?php"), E("plugins/f.php/x", b"x")], "path_conflict"),
    ],
    ids=["absolute", "etc", "wp-config", "uploads", "wp-content", "missing", "through-file",
         "through-link-then-up", "loop", "self", "chain-of-42", "under-a-link", "under-a-file"],
)  # fmt: skip
def test_symlinks_leaving_the_deployed_code_are_refused(
    tmp_path: Path, extra: list[E], reason: str
) -> None:
    for kind in ("tar", "zip"):
        refused(tmp_path, write(tmp_path / kind, kind, [*GOOD, *extra]), reason)


@pytest.mark.spec("REL-25")
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_code_directory_is_a_directory(tmp_path: Path, kind: str) -> None:
    entries = [E("plugins/a/a.php", b"<?php"), E("themes", link="plugins")]
    assert refused(tmp_path, write(tmp_path / "a", kind, entries), "path_conflict").path == "themes"


@pytest.mark.spec("REL-25")
def test_a_zip_symlink_entry_is_a_symlink(tmp_path: Path) -> None:
    entries = [*GOOD, E("plugins/foo/passwd.php", link="../../../../../etc/passwd")]
    refusal_ = refused(tmp_path, write_zip(tmp_path / "a.zip", entries), "link_outside")
    assert refusal_.path == "plugins/foo/passwd.php"
    assert "etc" not in str(refusal_), "the message names the entry, never its target"


# -- REL-26 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-26")
@pytest.mark.parametrize(
    "entries",
    [
        [E("plugins/a/x.php", b"good"), E("plugins/a/x.php", b"evil")],
        [E("./plugins/a/x.php", b"good"), E("plugins/a/x.php", b"evil")],
        [E("plugins/a/", directory=True), E("plugins//a/", directory=True)],
        [E("plugins/a/x.php", b"good"), E("plugins/a/x.php", link="../../b")],
    ],
    ids=["twice", "dot-slash", "directory-twice", "file-then-link"],
)
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_second_entry_for_one_path_is_refused(
    tmp_path: Path, entries: list[E], kind: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        archive = write(tmp_path / "a", kind, entries)
    assert refused(tmp_path, archive, "duplicate_entry").path == entries[1].name


# -- REL-27 -------------------------------------------------------------------------------


def gzip_bomb(path: Path, members: int, size: int) -> Path:
    """`members` tar members of `size` zeros, each honest about its size, as gzip members
    (cheap to build: one compressed block of zeros reused), and bytes after them that
    only a reader of the whole file would meet."""
    zeros = gzip.compress(bytes(size))
    with path.open("wb") as out:
        for n in range(members):
            out.write(gzip.compress(_header(n, size)))
            out.write(zeros)
        out.write(gzip.compress(bytes(1024)))
        out.write(b"garbage at the end: reached only by reading everything")
    return path


def _header(n: int, size: int) -> bytes:
    info = tarfile.TarInfo(f"plugins/bomb/{n}.bin")
    info.size, info.mtime = size, MTIME
    return info.tobuf(tarfile.USTAR_FORMAT)


@pytest.mark.spec("REL-27")
def test_a_gzip_bomb_stops_at_the_limit_not_at_its_end(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", members=1024, size=MiB)  # 1 GiB of zeros
    assert bomb.stat().st_size < 2 * MiB
    # Each member is under the limit: only counting what is read stops it, and it stops
    # before the garbage at the end (reading it all would make it `corrupt`).
    refusal_ = refused(tmp_path, bomb, "too_large", Limits(max_bytes=10 * MiB))
    assert (
        refusal_.path == "plugins/bomb/9.bin"
    )  # nine MiB and ten names read, a tenth MiB won't fit
    assert "10485760" in refusal_.message


@pytest.mark.spec("REL-27")
def test_a_declared_size_refuses_early_and_a_lying_one_is_corrupt(tmp_path: Path) -> None:
    declared = raw_tar(tmp_path / "a.tar", _header(0, 1024 * MiB), b"only a little")
    assert (
        refused(tmp_path, declared, "too_large", Limits(max_bytes=10 * MiB)).path
        == "plugins/bomb/0.bin"
    )
    short = tmp_path / "short.tar"
    short.write_bytes(_header(0, 5000) + b"x" * 100)  # says 5000, holds 100
    refused(tmp_path, short, "corrupt")
    long = raw_tar(tmp_path / "long.tar", _header(0, 10) + padded(b"x" * 2000))  # says 10
    refused(tmp_path, long, "corrupt")


def _zip_sizes(path: Path, data: bytes, declared: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("plugins/a.bin", data)
    raw = bytearray(path.read_bytes())
    for signature, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<I", raw, raw.find(signature) + at, declared)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.spec("REL-27")
def test_zip_sizes_are_counted_not_believed(tmp_path: Path) -> None:
    limits = Limits(max_bytes=MiB)
    declared = _zip_sizes(tmp_path / "a.zip", bytes(64 * MiB), 64 * MiB)  # honest, too big
    assert refused(tmp_path, declared, "too_large", limits).path == "plugins/a.bin"
    small = _zip_sizes(tmp_path / "b.zip", bytes(64 * MiB), 1000)  # says 1000, inflates to 64 MiB
    refused(tmp_path, small, "corrupt", limits)
    large = _zip_sizes(tmp_path / "c.zip", b"x" * 100, 200)  # says 200, holds 100
    refused(tmp_path, large, "corrupt", limits)
    many = write_zip(
        tmp_path / "d.zip", [E(f"plugins/{n}.bin", bytes(256 * 1024)) for n in range(16)]
    )
    assert refused(tmp_path, many, "too_large", limits).path == "plugins/3.bin"


@pytest.mark.spec("REL-27")
def test_names_and_extended_headers_count_toward_the_bytes(tmp_path: Path) -> None:
    names = write_tar(tmp_path / "a.tar", [E(f"plugins/{n:04d}-{'n' * 90}.php") for n in range(20)])
    refused(tmp_path, names, "too_large", Limits(max_bytes=1000))
    pax = raw_tar(tmp_path / "b.tar", pax_header(("comment", b"c" * 2000)), member("plugins/a.php"))
    refused(tmp_path, pax, "too_large", Limits(max_bytes=1000))


@pytest.mark.spec("REL-27")
def test_entries_are_counted(tmp_path: Path) -> None:
    limits = Limits(max_entries=5)
    six = [E(f"plugins/{n}.php", b"x") for n in range(6)]
    for kind in ("tar", "tar.gz", "zip"):
        refused(tmp_path, write(tmp_path / kind, kind, six), "too_many_entries", limits)
    globals_ = raw_tar(
        tmp_path / "g.tar",
        *[pax_header(("comment", b"x"), kind=tarfile.XGLTYPE)] * 6,
        member("plugins/a.php"),
    )
    refused(tmp_path, globals_, "too_many_entries", limits)
    deep = write_tar(
        tmp_path / "deep.tar", [E("plugins/a/b/c/d/e.php", b"x")]
    )  # one entry, five directories
    refused(tmp_path, deep, "too_many_entries", limits)
    assert files_of(check(tmp_path, deep, Limits(max_entries=6))) == {"plugins/a/b/c/d/e.php": b"x"}


@pytest.mark.spec("REL-27")
def test_a_zip_index_is_bounded_before_zipfile_reads_it(tmp_path: Path) -> None:
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as archive:
        for n in range(20):
            info = zipfile.ZipInfo(f"plugins/{n}.php")
            info.comment = b"c" * 60_000  # 1.2 MB of central directory for 20 entries
            archive.writestr(info, b"<?php")
    assert refused(tmp_path, big, "too_large", Limits(max_entries=100)).path is None
    assert check(tmp_path, big).summary.files == 20


# -- REL-28 -------------------------------------------------------------------------------


@pytest.mark.spec("REL-28")
def test_the_normalised_tar(tmp_path: Path) -> None:
    entries = [
        *GOOD,
        E("plugins/foo/setuid", b"s", mode=0o4775),
        E("plugins/foo/shared.php", b"w", mode=0o666),
        E("plugins/foo/open/", directory=True, mode=0o1777, mtime=NEWER + 1),  # empty
    ]
    checked = check(tmp_path, write_tar(tmp_path / "a.tar", entries))
    found = contents(checked)
    assert [o.name for o in found] == sorted(
        [e.name.rstrip("/") for e in entries], key=lambda n: tuple(n.split("/"))
    )
    assert {o.owner for o in found} == {(0, 0, "", "")}
    by_name = {o.name: o for o in found}
    assert by_name["plugins/foo/setuid"].mode == 0o755
    assert by_name["plugins/foo/bin/run"].mode == 0o755
    assert by_name["plugins/foo/shared.php"].mode == 0o644
    assert by_name["plugins/foo/open"].mode == 0o755
    assert {o.mode for o in found if o.type == tarfile.DIRTYPE} == {0o755}
    assert by_name["plugins/foo/foo.php"].mtime == MTIME
    assert by_name["themes/bar/functions.php"].mtime == NEWER
    assert by_name["themes/bar"].mtime == by_name["themes"].mtime == NEWER  # the newest below
    assert by_name["plugins/foo/open"].mtime == NEWER + 1  # an empty one keeps its own
    assert by_name["themes/bar/footer.php"].linkname == "../../plugins/foo/templates/footer.php"
    summary = checked.summary
    assert summary.items == (
        "mu-plugins/loader.php",
        "plugins/foo",
        "plugins/hello.php",
        "themes/bar",
    )
    assert summary.files == len(GOOD_FILES) + 2
    assert summary.total_bytes == sum(map(len, GOOD_FILES.values())) + 2
    again = check(tmp_path, write_tar(tmp_path / "b.tar", list(reversed(entries))))
    assert again.summary.sha256 == summary.sha256, "the order of the archive does not matter"
    assert checked.tar.read_bytes() == again.tar.read_bytes()


@pytest.mark.spec("REL-28")
def test_an_existing_target_is_neither_overwritten_nor_removed(tmp_path: Path) -> None:
    target = tmp_path / "normalised.tar"
    target.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        check_archive(write_tar(tmp_path / "a.tar", GOOD), target)
    assert target.read_bytes() == b"someone else's"


@pytest.mark.spec("REL-28")
def test_directories_are_included_whether_the_archive_has_them_or_not(tmp_path: Path) -> None:
    with_dirs = check(tmp_path, write_tar(tmp_path / "a.tar", GOOD)).summary.sha256
    bare = [e for e in GOOD if not e.directory]
    assert check(tmp_path, write_zip(tmp_path / "b.zip", bare)).summary.sha256 == with_dirs


def _git(cwd: Path, *args: str) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_DATE": "2026-12-01T12:00:00Z",
        "GIT_COMMITTER_DATE": "2026-12-01T12:00:00Z",
    }
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd, env=env, check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.spec("REL-28", "REL-21")
def test_git_archive_as_tar_tar_gz_and_zip_normalise_alike(tmp_path: Path) -> None:
    assert shutil.which("git"), "git is a test dependency (make system-deps)"
    repo = tmp_path / "repo"
    for e in GOOD:
        path = repo / "wp-content" / e.name
        if e.directory:
            path.mkdir(parents=True, exist_ok=True)
        elif e.link is not None:
            path.symlink_to(e.link)
        else:
            path.write_bytes(e.data)
            path.chmod(e.mode)
    (repo / "README.md").write_text("# a site\n")
    (repo / ".gitattributes").write_text("docs export-ignore\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "deploy.md").write_text("how we deploy\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "site")
    shas = set()
    for fmt in ("tar", "tar.gz", "zip"):
        out = tmp_path / f"site.{fmt}"
        _git(repo, "archive", f"--format={fmt}", "--prefix=site/", "-o", str(out), "HEAD")
        checked = check(tmp_path, out)
        assert files_of(checked) == GOOD_FILES
        assert checked.summary.ignored == ("site/.gitattributes", "site/README.md")
        shas.add(checked.summary.sha256)
    assert len(shas) == 1


# -- REL-29 -------------------------------------------------------------------------------

_SAFE_NAME = st.text(alphabet="abcXYZ019-_.~é ", min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..")
)
_SAFE_PATH = st.tuples(
    st.sampled_from(sorted(CODE_DIRS)), st.lists(_SAFE_NAME, min_size=1, max_size=4)
).map(lambda t: "/".join([t[0], *t[1]]))


def _without_conflicts(files: dict[str, bytes]) -> dict[str, bytes]:
    """No path both a file and another's directory."""
    return {p: d for p, d in files.items() if not any(q.startswith(p + "/") for q in files)}


@pytest.mark.spec("REL-29")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.dictionaries(_SAFE_PATH, st.binary(max_size=300), min_size=1, max_size=12),
    kind=st.sampled_from(["tar", "tar.gz", "zip"]),
    prefix=st.sampled_from(["", "wp-content/", "repo-main/", "./"]),
)
def test_safe_trees_are_accepted_and_round_trip(
    files: dict[str, bytes], kind: str, prefix: str
) -> None:
    files = _without_conflicts(files)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        entries = [E(prefix + name, data) for name, data in files.items()]
        checked = check(tmp, write(tmp / "archive", kind, entries))
        assert files_of(checked) == files
        assert checked.summary.files == len(files)
        assert checked.summary.total_bytes == sum(map(len, files.values()))


_TOKENS = [
    "..",
    ".",
    "/",
    "/",
    "a",
    "a",
    "b.php",
    "t",
    "plugins",
    "uploads",
    "wp-content",
    "\\",
    "\x00",
]
_HOSTILE = st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=8).map("".join)
_PREFIX = st.sampled_from(["plugins/", "plugins/a/", "themes/t/", "mu-plugins/", "wp-content/"])
_PLAUSIBLE = st.tuples(
    _PREFIX,
    st.lists(
        st.sampled_from(["a", "b.php", "c", "t", ".", "uploads", "plugins"]), min_size=1, max_size=3
    )
    .filter(lambda parts: parts[-1] != ".")
    .map("/".join),
).map("".join)
_HOSTILE_NAME = st.one_of(_HOSTILE, st.tuples(_PREFIX, _HOSTILE).map("".join), *[_PLAUSIBLE] * 4)
_HOSTILE_TARGET = st.lists(
    st.sampled_from(["..", "..", ".", "", "a", "b.php", "t", "plugins", "themes", "uploads"]),
    min_size=1,
    max_size=6,
).map("/".join)


@st.composite
def _hostile_entries(draw: st.DrawFn) -> list[E]:
    entries = [
        E("plugins/a/b.php", b"<?php"),
        E("plugins/b.php", b"<?php"),
        E("themes/t/", directory=True),
    ]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(_HOSTILE_NAME)
        form = draw(st.sampled_from(["file", "dir", "link", "link"]))
        if form == "link":
            entries.append(E(name, link=draw(_HOSTILE_TARGET)))
        else:
            entries.append(E(name, b"" if form == "dir" else b"x", directory=form == "dir"))
    return entries


def _assert_inside_code_dirs(tar: Path, scratch: Path) -> None:
    """Extracts with Python's `data` filter (which raises on anything leaving the
    destination) and follows every path: all of it is in the three directories."""
    root = scratch / "release" / "wp-content"
    root.mkdir(parents=True)
    with tarfile.open(tar) as archive:
        archive.extractall(root, filter="data")
    allowed = [(root / d).resolve() for d in CODE_DIRS]
    for path in root.rglob("*"):
        assert path.relative_to(root).parts[0] in CODE_DIRS, path
        assert path.exists(), f"a dangling symlink: {path}"
        real = path.resolve()
        assert any(real == a or a in real.parents for a in allowed), (path, real)


@pytest.mark.spec("REL-29")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=_hostile_entries(), kind=st.sampled_from(["tar", "zip"]))
def test_nothing_accepted_resolves_outside(entries: list[E], kind: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
                source = write(tmp / "archive", kind, entries)
        except (ValueError, UnicodeError):
            assume(False)  # a name tarfile or zipfile will not write
        try:
            checked = check(tmp, source)
        except ArchiveRefused:
            return  # refused: nothing reaches a node (its reason is one of REASONS by construction)
        _assert_inside_code_dirs(checked.tar, tmp)
