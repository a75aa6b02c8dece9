"""Whether this pod's resource owns its tenant on this Redis: the owner record, read only.

The operator records the uid of the WhatsAppSession that owns a tenant in
``contract.owner_key`` (once, SET NX) and gives the pod that uid in
``WASP_OWNER_UID``. Before the pod touches anything of the tenant (auth
state, lease, queue) it reads the record: another uid there means another
resource owns the tenant, and the pod must not run. No record, or no uid
given (sandbox mode has no operator), lets it go on.

Never writes the record: only the operator does.
"""

from __future__ import annotations

import redis

from wasp import contract


def foreign_owner(client: redis.Redis, tenant: str, uid: str | None) -> str | None:
    """The uid that owns ``tenant`` if it is not ``uid``; ``None`` if the pod may run."""
    if uid is None:
        return None
    raw = client.get(contract.owner_key(tenant))
    if raw is None:
        return None
    owner = raw.decode() if isinstance(raw, bytes) else str(raw)
    return None if owner == uid else owner


def conflict_message(tenant: str, owner: str, uid: str) -> str:
    """The one sentence a pod of a non-owning resource leaves in its status and log."""
    return (
        f"tenant {tenant} is owned on this Redis by the WhatsAppSession with uid {owner}, "
        f"not by this pod's ({uid}); this pod touches nothing of it and stops. "
        "Give this resource another tenant, or delete it"
    )
