"""The tenant's auth state in Redis: restore before connecting, checkpoint while running.

Owns ``wasp:<tenant>:auth``. A checkpoint is: online backup of the live
database in a child process (``snapshot.backup_database``), seal (compress +
AES-GCM), and one Lua script that writes only if (1) the lease still holds
our value, (2) the stored generation is not newer than the one we last saw
(newer: another writer), (3) the stored fencing token is not newer than ours
and (4) it would not replace a snapshot with a device by one without.
Restore decrypts, checks SQLite's integrity in a child process and moves the
file into place before the transport opens it.

Redis rolled back (restored from an older snapshot, or a failover to a
replica that lagged) is detected here, never undone silently: a checkpoint
that finds an older generation than ours (with a fencing token not newer
than ours), or no snapshot at all while we had written one, writes our
newer state over it and says so (``Checkpoint.rollback``). At start, a local
database (the data dir survives a container restart) that is newer than
the stored snapshot by its mark (``local_generation``), belongs to this
tenant and transport, holds a device and passes the integrity check is kept
instead of restored over (``kept_local``); the next checkpoint (on
Connected, once the account guard admitted it) writes it back and reports
the rollback the same way.

Must not decide *when* to checkpoint (the lifecycle does) nor what a
rollback means to the user (``rollback``), and must never open the live
database in this process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis
import structlog

from wasp import contract
from wasp_session.errors import AuthStoreError, LeaseLostError, SnapshotRejectedError
from wasp_session.lease import Lease
from wasp_session.local_generation import GenerationFile, Mark
from wasp_session.snapshot import (
    Header,
    Inspection,
    backup_database,
    inspect_database,
    seal,
    split,
    unseal,
)
from wasp_session.status import utc_now

log = structlog.stdlib.get_logger("wasp_session.auth_store")

# KEYS: auth, lease. ARGV: our lease value, the generation we last wrote or
# restored, our fencing token, "1" if the snapshot holds a device, the blob.
# Replies "ok", a refusal, or "rolled_back:<stored generation | none>" (written).
_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease_lost' end
local ours = tonumber(ARGV[2])
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[5])
  if ours > 0 then return 'rolled_back:none' end
  return 'ok'
end
local newline = string.find(current, '\\n', 1, true)
if not newline then return 'corrupt_current' end
local head = cjson.decode(string.sub(current, 1, newline - 1))
local stored = tonumber(head['generation'])
if stored > ours then return 'stale_generation' end
if tonumber(head['fence']) > tonumber(ARGV[3]) then return 'stale_fence' end
if head['has_device'] and ARGV[4] ~= '1' then return 'would_drop_device' end
redis.call('SET', KEYS[1], ARGV[5])
if stored < ours then return 'rolled_back:' .. stored end
return 'ok'
"""
_ROLLED_BACK = "rolled_back"

_DELETE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lease_lost' end
redis.call('DEL', KEYS[1])
return 'ok'
"""


@dataclass(frozen=True)
class Rollback:
    """Redis held older auth state than this session had: what it held, what we had."""

    stored_generation: int | None  # None: no snapshot at all
    ours: int  # the generation this session had written (or its local copy matched)
    written: int  # the generation written over it
    from_local_copy: bool  # kept from the data dir at start, rather than the live session


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint written to Redis."""

    generation: int
    bytes_stored: int
    has_device: bool
    seconds: float
    rollback: Rollback | None = None  # it was written over older state: Redis rolled back


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
        self._marks = GenerationFile(database)
        self.generation = 0  # the generation we last wrote or restored (or kept locally)
        self.kept_local = False  # restore kept a local database newer than Redis's

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

        A local database newer than the stored snapshot is kept instead
        (``kept_local``; then the return says whether it holds a device).
        Raises ``AuthStoreError`` if a snapshot exists but cannot be trusted.
        """
        with self._lock:
            self.kept_local = False
            blob = self._blob()
            stored = None if blob is None else self._check_owner(split(blob)[0])
            local = self._newer_local(stored)
            if local is not None:
                self.generation = local.generation
                self.kept_local = True
                log.warning(
                    "auth_local_newer_kept",
                    local_generation=local.generation,
                    stored_generation=None if stored is None else stored.generation,
                )
                return True
            if blob is None:
                self.generation = 0
                return False
            header, database = unseal(blob, self._aes_key)
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
            self._mark(header)
            return header.has_device

    def _check_owner(self, header: Header) -> Header:
        if header.tenant != self._tenant:
            msg = f"snapshot belongs to tenant {header.tenant!r}"
            raise AuthStoreError(msg)
        if header.transport != self._transport:
            msg = f"snapshot is from the {header.transport} transport, not {self._transport}"
            raise AuthStoreError(msg)
        return header

    def _newer_local(self, stored: Header | None) -> Mark | None:
        """The local database's mark if it is newer than ``stored`` and worth keeping.

        Newer: a higher generation than the stored one, and the stored
        fencing token not newer than the mark's (else another pod wrote it
        since: it is the newer state, whatever its generation). With nothing
        stored, only if no other pod held the lease since the mark (our token
        follows the mark's): another pod's logout deletes the snapshot too.
        """
        mark = self._marks.read()
        if (
            mark is None
            or mark.tenant != self._tenant
            or mark.transport != self._transport
            or mark.generation <= 0
            or not self.database.exists()
        ):
            return None
        if stored is None:
            token = self._lease.token
            if token is None or token > mark.fence + 1:
                return None
        elif stored.generation >= mark.generation or stored.fence > mark.fence:
            return None
        inspection = self._inspect_local()
        if not inspection.ok or not inspection.has_device:
            log.warning(
                "auth_local_copy_unusable",
                local_generation=mark.generation,
                integrity=inspection.integrity,
                has_device=inspection.has_device,
            )
            return None
        return mark

    def _inspect_local(self) -> Inspection:
        """Integrity and device of the local database (a copy in a child process: WAL-safe)."""
        copy = self.database.with_name(self.database.name + ".inspect")
        try:
            return backup_database(self.database, copy)
        except AuthStoreError as error:
            return Inspection(has_device=False, integrity=str(error))
        finally:
            copy.unlink(missing_ok=True)

    def _mark(self, header: Header) -> None:
        """The local database now matches ``header``'s snapshot (or is newer)."""
        self._marks.write(Mark(self._tenant, self._transport, header.generation, header.fence))

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
            verdict, _, stored = verdict.partition(":")
            if verdict not in ("ok", _ROLLED_BACK):
                raise SnapshotRejectedError(verdict)
            rollback = None
            if verdict == _ROLLED_BACK:
                rollback = Rollback(
                    stored_generation=int(stored) if stored.isdigit() else None,
                    ours=self.generation,
                    written=header.generation,
                    from_local_copy=self.kept_local,
                )
            self.kept_local = False
            self.generation = header.generation
            self._mark(header)
            return Checkpoint(
                generation=header.generation,
                bytes_stored=len(blob),
                has_device=inspection.has_device,
                seconds=time.monotonic() - started,
                rollback=rollback,
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
            self.kept_local = False

    def wipe_local(self) -> None:
        """Remove the local database files and their mark (after LoggedOut, before pairing)."""
        self._marks.remove()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.database}{suffix}").unlink(missing_ok=True)


def _text(reply: object) -> str:
    """A script's reply as text."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)
