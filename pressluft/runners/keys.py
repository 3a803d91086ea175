"""Node SSH key pairs: generated per node, private half sealed by the caller."""

from __future__ import annotations

from pressluft.runners.sshlib import asyncssh

__all__ = ["KeyPair", "generate_key_pair"]


class KeyPair:
    """An ed25519 key pair: the private key (OpenSSH PEM) and the public line."""

    __slots__ = ("private_pem", "public_line")

    def __init__(self, private_pem: bytes, public_line: str) -> None:
        self.private_pem = private_pem
        self.public_line = public_line

    def __repr__(self) -> str:  # never the private half, even in a traceback
        return f"KeyPair(public_line={self.public_line!r})"


def generate_key_pair(comment: str) -> KeyPair:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    public = key.export_public_key("openssh").decode().strip()
    return KeyPair(key.export_private_key("openssh"), public)
