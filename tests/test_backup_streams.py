"""What a backup's manifest counts while the streams pass (unit tests; the counts of
a real dump and archive are compared on a node in tests/test_backup_node.py)."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pressluft.contexts.backups.streams import RowCounter, TarCounter

TEXT = st.text(alphabet=st.sampled_from(list("ab(),;'\\\n x")), max_size=12)


def _quote(value: str) -> str:
    """A string literal as mysqldump writes it (backslash escapes, no raw newline)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _dump(tables: dict[str, list[str]], one_line: bool) -> bytes:
    out = []
    for name, rows in tables.items():
        out.append(f"CREATE TABLE `{name}` (\n  `v` text\n);")
        if rows:
            tuples = [f"({i},{_quote(v)},0xAB,NULL)" for i, v in enumerate(rows)]
            sep = "," if one_line else ",\n"
            head = f"INSERT INTO `{name}` VALUES " if one_line else f"INSERT INTO `{name}` VALUES\n"
            out.append(head + sep.join(tuples) + ";")
    return ("\n".join(out) + "\n").encode()


@pytest.mark.spec("BAK-23")
@settings(max_examples=60, deadline=None)
@given(
    tables=st.dictionaries(st.sampled_from(["wp_posts", "wp_options", "a`b"]), st.lists(TEXT)),
    one_line=st.booleans(),
    step=st.integers(1, 64),
)
def test_rows_are_counted_per_table_whatever_the_chunks(
    tables: dict[str, list[str]], one_line: bool, step: int
) -> None:
    dump = _dump({k.replace("`", "``"): v for k, v in tables.items()}, one_line)
    counter = RowCounter()
    for i in range(0, len(dump), step):
        counter.feed(dump[i : i + step])
    assert counter.close() == {k: len(v) for k, v in tables.items()}


@pytest.mark.spec("BAK-23")
@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), max_size=8),
    long_names=st.booleans(),
    step=st.integers(1, 2048),
)
def test_files_and_bytes_are_counted_from_the_archive(
    sizes: list[int], long_names: bool, step: int
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        folder = tarfile.TarInfo("release")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for i, size in enumerate(sizes):
            name = "release/" + ("n" * 150 if long_names else "f") + str(i)
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(b"x" * size))
        link = tarfile.TarInfo("release/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "../shared/uploads"
        archive.addfile(link)
    raw = buffer.getvalue()
    counter = TarCounter()
    for i in range(0, len(raw), step):
        counter.feed(raw[i : i + step])
    assert (counter.files, counter.bytes) == (len(sizes), sum(sizes))
