"""Which operating systems a node may run (specs/nodes.md NOD-36): the readiness
check reads the node's os-release; these are the rules it applies, on real
os-release files of the systems Pressluft meets (the end-to-end refusal is in
tests/test_trixie_systemd.py)."""

from __future__ import annotations

import pytest

from pressluft.runners.ssh import SUPPORTED_OS, parse_os_release, unsupported_os

BOOKWORM = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""
TRIXIE = """PRETTY_NAME="Debian GNU/Linux 13 (trixie)"
NAME="Debian GNU/Linux"
VERSION_ID="13"
VERSION="13 (trixie)"
VERSION_CODENAME=trixie
DEBIAN_VERSION_FULL=13.2
ID=debian
"""
BULLSEYE = """PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"
NAME="Debian GNU/Linux"
VERSION_ID="11"
ID=debian
"""
UBUNTU = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
"""
# Debian testing/sid: no VERSION_ID.
TESTING = """PRETTY_NAME="Debian GNU/Linux forky/sid"
NAME="Debian GNU/Linux"
VERSION_CODENAME=forky
ID=debian
"""
# A derivative that claims to be like Debian, with Debian's version number.
LOOKALIKE = """# a comment
PRETTY_NAME='Raspbian 12'
ID=raspbian
ID_LIKE=debian
VERSION_ID=12
"""


def test_os_release_fields_are_read_quoted_or_bare() -> None:
    fields = parse_os_release(BOOKWORM)
    assert fields["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    assert (fields["ID"], fields["VERSION_ID"], fields["VERSION_CODENAME"]) == (
        "debian",
        "12",
        "bookworm",
    )
    assert parse_os_release(LOOKALIKE)["PRETTY_NAME"] == "Raspbian 12"
    assert parse_os_release("") == {}
    assert parse_os_release("garbage\nNAME='unterminated\n")["NAME"] == "unterminated"


@pytest.mark.spec("NOD-36")
@pytest.mark.parametrize("text", [BOOKWORM, TRIXIE], ids=["debian-12", "debian-13"])
def test_debian_12_and_13_are_supported(text: str) -> None:
    assert unsupported_os(parse_os_release(text)) is None
    assert SUPPORTED_OS == {"debian": ("12", "13")}


@pytest.mark.spec("NOD-36")
@pytest.mark.parametrize(
    ("text", "named"),
    [
        (BULLSEYE, "Debian GNU/Linux 11 (bullseye)"),
        (UBUNTU, "Ubuntu 24.04.1 LTS"),
        (TESTING, "Debian GNU/Linux forky/sid"),
        (LOOKALIKE, "Raspbian 12"),
        ("", "unknown (no /etc/os-release)"),
    ],
    ids=["debian-11", "ubuntu-24.04", "debian-testing", "derivative", "no-os-release"],
)
def test_anything_else_is_refused_naming_what_was_found(text: str, named: str) -> None:
    reason = unsupported_os(parse_os_release(text))
    assert reason == (
        f"the node runs {named}; Pressluft supports Debian 12 (bookworm) or Debian 13 (trixie)"
    )
