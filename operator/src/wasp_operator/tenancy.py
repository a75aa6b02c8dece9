"""What a session needs on its Redis before its pod may run, and what its deletion removes.

Owns the order of the tenant's Redis side, every cycle: claim the tenant
(``claim``: nothing is made for a resource that does not own it), then keep
(``keep``) the two credential Secrets (created once, owned by the resource)
and the two ACL users (``redis_users``). On deletion, for the owner only:
the users, then the tenant's keys, the owner key last.

The Secrets' data is remembered once read or written, and read again from
the API server only when ``keep`` is told to (a pod is about to be made) or
``SECRET_RECHECK_SECONDS`` (75-100 % of it, at random) have passed: a
resync of a thousand sessions every 30 s then costs Redis calls, not two
thousand Secret reads. A Secret deleted or edited by hand is therefore
noticed within that time, or at once when the session's pod is to be made
(the pod mounts it). A brand-new session's Secrets are created without a
read first (``absent``); a conflict then reads the one that exists.

It holds no state beyond that memory and ``RedisUsers``' memory of what it
made since the start, and never decides about pods or the status
(``supervisor.py`` does).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from wasp_operator import ownership
from wasp_operator.kube import Kube
from wasp_operator.redis_users import (
    Credential,
    Identity,
    RedisUsers,
    build_credential_secret,
    credential_for,
    identities_of,
)
from wasp_operator.relay import StatusRelay
from wasp_operator.sessions import Session

SECRET_RECHECK_SECONDS = 600.0  # a remembered credential Secret is read again within this long
SECRET_RECHECK_JITTER = 0.75  # ... drawn from [0.75, 1] x it: a burst of reads does not recur


@dataclass(frozen=True)
class Standing:
    """Where a session stands on its Redis after a cycle."""

    owner: str  # the uid of the resource that owns the tenant
    api_credentials: dict[str, str] | None = None  # {secretName, username}, once the users exist
    made: tuple[tuple[str, str], ...] = ()  # (username, why) of each user made this cycle


@dataclass
class Tenancy:
    """The tenant's ownership, credential Secrets and Redis users, kept level-based."""

    kube: Kube
    relay: StatusRelay
    users: RedisUsers
    # (namespace, Secret name) -> (monotonic time to read it again, its data)
    _secrets: dict[tuple[str, str], tuple[float, dict[str, str]]] = field(default_factory=dict)

    async def claim(self, session: Session, url: str) -> str:
        """Claim the tenant for the session (unless owned already): the owner's uid."""
        async with self.relay.connection(url) as client:
            return await ownership.claim(client, session.tenant, session.uid)

    async def keep(
        self, session: Session, url: str, *, recheck: bool = False, absent: bool = False
    ) -> Standing:
        """As the tenant's owner: keep its Secrets and users. Where it stands.

        ``recheck``: read the Secrets from the API server even if remembered;
        ``absent``: they most likely do not exist yet (create, read only on a conflict).
        """
        made: list[tuple[str, str]] = []
        identities = identities_of(session)
        async with self.relay.connection(url) as client:
            for identity in identities:
                credential = await self._credential(
                    session, identity, url, recheck=recheck, absent=absent
                )
                why = await self.users.ensure(client, url, identity, credential)
                if why is not None:
                    made.append((identity.username, why))
        return Standing(session.uid, api_credentials_of(session), tuple(made))

    async def _credential(
        self, session: Session, identity: Identity, url: str, *, recheck: bool, absent: bool
    ) -> Credential:
        """The identity's credential, its Secret created (or brought up to date) first."""
        key = (session.namespace, identity.secret_name)
        remembered = self._secrets.get(key)
        if remembered is not None and not recheck and time.monotonic() < remembered[0]:
            stored: dict[str, str] | None = remembered[1]
        elif absent and remembered is None:
            stored = None  # a new session: create it; a conflict reads the one that exists
        else:
            stored = await asyncio.to_thread(self.kube.secret_data, *key)
        credential, stale = credential_for(identity, url, stored)
        if stored is None:
            body = build_credential_secret(session, identity, credential)
            if not await asyncio.to_thread(self.kube.create_secret, body):
                # Made meanwhile (another replica, a retried cycle): its password wins.
                stored = await asyncio.to_thread(self.kube.secret_data, *key)
                credential, stale = credential_for(identity, url, stored)
            else:
                stale = False
        if stale:
            await asyncio.to_thread(self.kube.patch_secret, *key, credential.data())
        self._secrets[key] = (_recheck_at(), credential.data())
        return credential

    async def forget(self, session: Session, url: str) -> bool:
        """As the owner: delete the tenant's users and keys (owner key last). False if not owner."""
        usernames = tuple(identity.username for identity in identities_of(session))
        async with self.relay.connection(url) as client:
            released = await ownership.release(client, session.tenant, session.uid, usernames)
        if released:
            self.users.forget(url, usernames)
        for identity in identities_of(session):
            self._secrets.pop((session.namespace, identity.secret_name), None)
        return released


def api_credentials_of(session: Session) -> dict[str, str]:
    """What the status says of the tenant API's credential: {secretName, username}."""
    api = identities_of(session)[1]
    return {"secretName": api.secret_name, "username": api.username}


def _recheck_at() -> float:
    """When a credential Secret just read or written is to be read again (monotonic)."""
    spread = random.uniform(SECRET_RECHECK_JITTER, 1.0)  # noqa: S311 - spreading, not secrecy
    return time.monotonic() + SECRET_RECHECK_SECONDS * spread
