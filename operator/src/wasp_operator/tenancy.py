"""What a session needs on its Redis before its pod may run, and what its deletion removes.

Owns the order of the tenant's Redis side, every cycle: claim the tenant
(``ownership.claim``: nothing is made for a resource that does not own it),
then keep the two credential Secrets (created once, owned by the resource),
then keep the two ACL users (``redis_users``). On deletion, for the owner
only: the users, then the tenant's keys, the owner key last.

It holds no state of its own beyond ``RedisUsers``' memory of what it made
since the start, and never decides about pods or the status
(``supervisor.py`` does).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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

    async def establish(self, session: Session, url: str) -> Standing:
        """Claim the tenant; as its owner, keep its Secrets and users. Where it stands."""
        async with self.relay.connection(url) as client:
            owner = await ownership.claim(client, session.tenant, session.uid)
            if owner != session.uid:
                return Standing(owner)
            made: list[tuple[str, str]] = []
            identities = identities_of(session)
            for identity in identities:
                credential = await self._credential(session, identity, url)
                why = await self.users.ensure(client, url, identity, credential)
                if why is not None:
                    made.append((identity.username, why))
        api = identities[1]
        return Standing(
            owner,
            api_credentials={"secretName": api.secret_name, "username": api.username},
            made=tuple(made),
        )

    async def _credential(self, session: Session, identity: Identity, url: str) -> Credential:
        """The identity's credential, its Secret created (or brought up to date) first."""
        stored = await asyncio.to_thread(
            self.kube.secret_data, session.namespace, identity.secret_name
        )
        credential, stale = credential_for(identity, url, stored)
        if stored is None:
            body = build_credential_secret(session, identity, credential)
            if not await asyncio.to_thread(self.kube.create_secret, body):
                # Made meanwhile (another replica, a retried cycle): its password wins.
                stored = await asyncio.to_thread(
                    self.kube.secret_data, session.namespace, identity.secret_name
                )
                credential, stale = credential_for(identity, url, stored)
            else:
                stale = False
        if stale:
            await asyncio.to_thread(
                self.kube.patch_secret, session.namespace, identity.secret_name, credential.data()
            )
        return credential

    async def forget(self, session: Session, url: str) -> bool:
        """As the owner: delete the tenant's users and keys (owner key last). False if not owner."""
        usernames = tuple(identity.username for identity in identities_of(session))
        async with self.relay.connection(url) as client:
            released = await ownership.release(client, session.tenant, session.uid, usernames)
        if released:
            self.users.forget(url, usernames)
        return released
