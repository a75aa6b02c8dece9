"""Snapshots of the local whatsmeow database as bytes: taken and checked in a child process.

Owns the child-process calls (``python -m wasp_session.sqlite_child``, a
fresh interpreter, never a fork) and the sealed format of a snapshot:
compressed, then AES-GCM encrypted, behind a one-line JSON header that Redis
can read (generation, fencing token, whether a device is stored) and that the
cipher authenticates. Pure functions ``seal``/``unseal`` carry no I/O.
Must not talk to Redis: ``auth_store`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wasp_session.errors import AuthStoreError

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_CHILD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Header:
    """What Redis (and a reader) may see of a snapshot without the key."""

    generation: int
    fence: int
    has_device: bool
    transport: str
    tenant: str
    size: int  # bytes of the uncompressed database
    at: str  # RFC 3339 UTC

    def encode(self) -> bytes:
        """The header as one JSON line (no newline inside)."""
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "generation": self.generation,
                "fence": self.fence,
                "has_device": self.has_device,
                "transport": self.transport,
                "tenant": self.tenant,
                "size": self.size,
                "at": self.at,
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Header:
        """Parse a header line; raise ``AuthStoreError`` if it is not one."""
        try:
            data = json.loads(raw)
            if data["v"] != FORMAT_VERSION:
                msg = f"unknown snapshot format {data['v']}"
                raise AuthStoreError(msg)
            return cls(
                generation=int(data["generation"]),
                fence=int(data["fence"]),
                has_device=bool(data["has_device"]),
                transport=str(data["transport"]),
                tenant=str(data["tenant"]),
                size=int(data["size"]),
                at=str(data["at"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            msg = f"unreadable snapshot header: {error}"
            raise AuthStoreError(msg) from error


def seal(header: Header, database: bytes, key: bytes) -> bytes:
    """Compress and encrypt ``database``; the header is authenticated, not hidden."""
    head = header.encode()
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, zlib.compress(database, 6), head)
    return head + b"\n" + nonce + ciphertext


def split(blob: bytes) -> tuple[Header, bytes]:
    """The header of a sealed snapshot and the rest."""
    head, sep, rest = blob.partition(b"\n")
    if not sep:
        msg = "snapshot has no header"
        raise AuthStoreError(msg)
    return Header.decode(head), rest


def unseal(blob: bytes, key: bytes) -> tuple[Header, bytes]:
    """Check and decrypt a sealed snapshot; raise ``AuthStoreError`` if it fails."""
    header, rest = split(blob)
    head = blob.partition(b"\n")[0]
    nonce, ciphertext = rest[:_NONCE_BYTES], rest[_NONCE_BYTES:]
    try:
        database = zlib.decompress(AESGCM(key).decrypt(nonce, ciphertext, head))
    except InvalidTag:
        msg = "snapshot does not decrypt with WASP_AUTH_KEY (wrong key or tampered)"
        raise AuthStoreError(msg) from None
    except zlib.error as error:
        msg = f"snapshot does not decompress: {error}"
        raise AuthStoreError(msg) from error
    if len(database) != header.size:
        msg = f"snapshot size {len(database)} != header size {header.size}"
        raise AuthStoreError(msg)
    return header, database


@dataclass(frozen=True)
class Inspection:
    """What the child process found in a database file."""

    has_device: bool
    integrity: str

    @property
    def ok(self) -> bool:
        """Whether SQLite's integrity check passed."""
        return self.integrity == "ok"


def _child(*args: str) -> Inspection:
    command = [sys.executable, "-m", "wasp_session.sqlite_child", *args]
    try:
        done = subprocess.run(  # noqa: S603 - our own module with paths we chose
            command, capture_output=True, text=True, timeout=_CHILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        msg = f"sqlite child timed out after {_CHILD_TIMEOUT} s"
        raise AuthStoreError(msg) from None
    if done.returncode != 0:
        msg = f"sqlite child failed ({done.returncode}): {done.stderr.strip()[-300:]}"
        raise AuthStoreError(msg)
    try:
        data = json.loads(done.stdout.strip().splitlines()[-1])
        return Inspection(has_device=bool(data["has_device"]), integrity=str(data["integrity"]))
    except (ValueError, KeyError, IndexError) as error:
        msg = f"sqlite child said something unreadable: {done.stdout[-300:]!r}"
        raise AuthStoreError(msg) from error


def backup_database(source: Path, destination: Path) -> Inspection:
    """Online backup of the live ``source`` into ``destination``, in a child process."""
    return _child("backup", str(source), str(destination))


def inspect_database(path: Path) -> Inspection:
    """Integrity and device check of a database file at rest, in a child process."""
    return _child("inspect", str(path))
