"""The tenant's auth state in Redis: restore before connecting, checkpoint while running.

Owns ``wasp:<tenant>:auth``. A checkpoint is: online backup of the live
database in a child process (``snapshot.backup_database``), seal (compress +
AES-GCM), and one Lua script that writes only if (1) the lease still holds
our value, (2) the stored generation is the one we last saw, (3) the stored
fencing token is not newer than ours and (4) it would not replace a snapshot
with a device by one without. Restore decrypts, checks SQLite's integrity in
a child process and moves the file into place before the transport opens it.

Must not decide *when* to checkpoint (the lifecycle does) and must never open
the live database in this process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis

from wasp import contract
from wasp_session.errors import AuthStoreError, LeaseLostError, SnapshotRejectedError
from wasp_session.lease import Lease
from wasp_session.snapshot import Header, backup_database, inspect_database, seal, split, unseal
from wasp_session.status import utc_now

_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease_lost' end
local current = redis.call('GET', KEYS[1])
if current then
  local newline = string.find(current, '\\n', 1, true)
  if not newline then return 'corrupt_current' end
  local head = cjson.decode(string.sub(current, 1, newline - 1))
  if tonumber(head['generation']) ~= tonumber(ARGV[2]) then return 'stale_generation' end
  if tonumber(head['fence']) > tonumber(ARGV[3]) then return 'stale_fence' end
  if head['has_device'] and ARGV[4] ~= '1' then return 'would_drop_device' end
end
redis.call('SET', KEYS[1], ARGV[5])
return 'ok'
"""

_DELETE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease_lost' end
redis.call('DEL', KEYS[1])
return 'ok'
"""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint written to Redis."""

    generation: int
    bytes_stored: int
    has_device: bool
    seconds: float


class AuthStore:
    """Reads and writes one tenant's sealed snapshot; binary Redis client."""

    def __init__(  # noqa: PLR0913 - keyword-only, each a distinct collaborator
        self,
        client: redis.Redis,
        *,
        tenant: str,
        key: bytes,
        lease: Lease,
        transport: str,
        database: Path,
    ) -> None:
        """Guard ``database`` (the transport's SQLite file) for ``tenant``."""
        self._redis = client
        self._tenant = tenant
        self._aes_key = key
        self._lease = lease
        self._transport = transport
        self.database = database
        self._auth_key = contract.auth_key(tenant)
        self._write = client.register_script(_WRITE)
        self._delete = client.register_script(_DELETE)
        self._lock = threading.Lock()
        self.generation = 0  # the generation stored in Redis as we last knew it

    # ------------------------------------------------------------ restore
    def stored_header(self) -> Header | None:
        """The header of the snapshot in Redis, if any (readable without the key)."""
        blob = self._blob()
        return None if blob is None else split(blob)[0]

    def _blob(self) -> bytes | None:
        value = self._redis.get(self._auth_key)
        return None if value is None else cast("bytes", value)

    def restore(self) -> bool:
        """Put the stored snapshot in place of the local database; return whether one was.

        Raises ``AuthStoreError`` if a snapshot exists but cannot be trusted.
        """
        with self._lock:
            blob = self._blob()
            if blob is None:
                self.generation = 0
                return False
            header, database = unseal(blob, self._aes_key)
            if header.tenant != self._tenant:
                msg = f"snapshot belongs to tenant {header.tenant!r}"
                raise AuthStoreError(msg)
            if header.transport != self._transport:
                msg = f"snapshot is from the {header.transport} transport, not {self._transport}"
                raise AuthStoreError(msg)
            self.database.parent.mkdir(parents=True, exist_ok=True)
            staging = self.database.with_name(self.database.name + ".restore")
            staging.write_bytes(database)
            inspection = inspect_database(staging)
            if not inspection.ok:
                staging.unlink(missing_ok=True)
                msg = f"restored database fails its integrity check: {inspection.integrity}"
                raise AuthStoreError(msg)
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{self.database}{suffix}").unlink(missing_ok=True)
            staging.replace(self.database)
            self.generation = header.generation
            return header.has_device

    # ------------------------------------------------------------ checkpoint
    def checkpoint(self) -> Checkpoint | None:
        """Snapshot the live database into Redis; ``None`` if there is nothing yet.

        Raises ``LeaseLostError`` if the lease is gone, ``SnapshotRejectedError``
        if Redis refused the write for another reason.
        """
        with self._lock:
            lease_value = self._lease.value
            token = self._lease.token
            if lease_value is None or token is None:
                msg = "checkpoint without the lease"
                raise LeaseLostError(msg)
            if not self.database.exists():
                return None
            started = time.monotonic()
            copy = self.database.with_name(self.database.name + ".checkpoint")
            try:
                inspection = backup_database(self.database, copy)
                if not inspection.ok:
                    msg = f"backup copy fails its integrity check: {inspection.integrity}"
                    raise AuthStoreError(msg)
                database = copy.read_bytes()
            finally:
                copy.unlink(missing_ok=True)
            header = Header(
                generation=self.generation + 1,
                fence=token,
                has_device=inspection.has_device,
                transport=self._transport,
                tenant=self._tenant,
                size=len(database),
                at=utc_now(),
            )
            blob = seal(header, database, self._aes_key)
            arguments: list[bytes | str | int] = [
                lease_value,
                self.generation,
                token,
                "1" if inspection.has_device else "0",
                blob,
            ]
            verdict = _text(self._write(keys=[self._auth_key, self._lease.key], args=arguments))
            if verdict == "lease_lost" and self._lease.renew():  # it expired unclaimed: ours again
                verdict = _text(self._write(keys=[self._auth_key, self._lease.key], args=arguments))
            if verdict == "lease_lost":
                self._lease.forget()
                msg = "the lease was lost before the checkpoint was written"
                raise LeaseLostError(msg)
            if verdict != "ok":
                raise SnapshotRejectedError(verdict)
            self.generation = header.generation
            return Checkpoint(
                generation=header.generation,
                bytes_stored=len(blob),
                has_device=inspection.has_device,
                seconds=time.monotonic() - started,
            )

    # ------------------------------------------------------------ logout
    def delete(self) -> None:
        """Delete the stored snapshot (LoggedOut); only while holding the lease."""
        with self._lock:
            lease_value = self._lease.value
            if lease_value is None:
                msg = "delete without the lease"
                raise LeaseLostError(msg)
            verdict = _text(
                self._delete(keys=[self._auth_key, self._lease.key], args=[lease_value])
            )
            if verdict != "ok" and self._lease.renew():  # it expired unclaimed: ours again
                verdict = _text(
                    self._delete(keys=[self._auth_key, self._lease.key], args=[lease_value])
                )
            if verdict != "ok":
                self._lease.forget()
                msg = "the lease was lost before the snapshot was deleted"
                raise LeaseLostError(msg)
            self.generation = 0

    def wipe_local(self) -> None:
        """Remove the local database files (after LoggedOut, before pairing again)."""
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)


def _text(reply: object) -> str:
    """A script's reply as text."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
