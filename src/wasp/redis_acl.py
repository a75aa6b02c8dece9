"""The Redis ACL rules of a tenant's two identities: its session pod and its API.

Owns what each identity may do on Redis, as ``ACL SETUSER`` rules, so the
operator (which makes and re-makes the users from its admin credential),
the tests and ``docs/security.md`` read one list. Pure and stdlib-only: it
builds rules, it never talks to Redis.

Both identities see only their tenant's keys and channels (every wasp key
carries the tenant; RQ's job ids and worker names carry it too, see
``wasp.contract.job_id``), plus the few global keys an RQ 3 worker or
enqueue touches (``rq:workers``, ``rq:queues``, ...: sets of names, no job
data). The API identity is narrower still: it enqueues, reads and writes its
messages and its event stream (appending, reading with its consumer groups,
acknowledging), reads the session's status, delivery settings and QR codes, and
never reaches the auth state, the lease, the owner record, the account pin,
the sent markers or the rate limit.

Commands: everything a client of wasp and RQ uses, without the ones that
reach beyond a tenant's keys (``KEYS``, ``SCAN``, ``RANDOMKEY``, the
``PUBSUB`` listings, ``CLIENT LIST``, ``FUNCTION``), and without
``@dangerous`` (``FLUSHALL``, ``CONFIG``, ``ACL SETUSER``, ``DEBUG``, ...).
"""

from __future__ import annotations

from typing import Final

from wasp import contract

__all__ = [
    "COMMAND_RULES",
    "api_user_rules",
    "rq_tenant_key_patterns",
    "session_user_rules",
    "setuser_arguments",
]

# Commands, applied in order: all, minus what is dangerous or looks beyond a
# tenant's own keys, plus the few harmless ones RQ and redis-py need back.
COMMAND_RULES: Final = (
    "+@all",
    "-@dangerous",
    "-scan",
    "-randomkey",
    "-dbsize",
    "-pubsub|channels",
    "-pubsub|numsub",
    "-pubsub|numpat",
    "-pubsub|shardchannels",
    "-pubsub|shardnumsub",
    "-function",
    "-fcall",
    "-fcall_ro",
    "-script|flush",
    "-script|kill",
    "+info",  # RQ reads the server's version; the session its maxmemory_policy
    "+client|setname",  # RQ names its worker's connection
    "+client|getname",
    "+client|id",
    "+client|info",  # RQ reads its own address (never CLIENT LIST: everyone's)
)

# Global keys of RQ 3 that a worker or an enqueue touches: sets and flags
# holding queue and worker names, never job data (measured one denial at a
# time with ACL LOG; see docs/security.md for what a tenant can do with them).
_RQ_GLOBAL_KEYS: Final = (
    "~rq:workers",
    "~rq:queues",
    "%R~rq:suspended",
    "~rq:rl-keys",
    "~rq:clean_groups",
    "~rq:groups",
)


def rq_tenant_key_patterns(tenant: str) -> tuple[str, ...]:
    """Glob patterns of RQ's keys of the tenant's queue and of its jobs (``<tenant>_<id>``).

    What both identities may reach under ``rq:``, and what the operator
    deletes with the session. Tenant ids are DNS-1123 labels (no ``:``,
    ``_`` or glob characters), so no pattern reaches another tenant's keys.
    """
    queue = contract.delivery_queue(tenant)
    job_prefix = contract.job_id(tenant, "")
    return (
        f"rq:*:{queue}",  # rq:queue:, rq:wip:, rq:finished:, rq:failed:, ... of the queue
        f"rq:*:{queue}:*",
        f"rq:job:{job_prefix}*",  # the job hashes, their dependents and dependencies
        f"rq:*:{job_prefix}*",  # rq:results:, rq:executions:, rq:execution: of its jobs
    )


def _rq_tenant_keys(tenant: str) -> tuple[str, ...]:
    """``rq_tenant_key_patterns`` as ACL key rules."""
    return tuple(f"~{pattern}" for pattern in rq_tenant_key_patterns(tenant))


def session_user_rules(tenant: str) -> tuple[str, ...]:
    """Key, channel and command rules of the tenant's session pod (no password)."""
    worker_prefix = contract.worker_name(tenant, "")
    return (
        f"~wasp:{tenant}:*",
        *_rq_tenant_keys(tenant),
        f"~rq:worker:{worker_prefix}*",
        *_RQ_GLOBAL_KEYS,
        f"&wasp:{tenant}:*",
        f"&{contract.qr_channel(tenant)}",
        f"&rq:pubsub:{worker_prefix}*",  # RQ's commands to its worker (e.g. stop a job)
        *COMMAND_RULES,
    )


def api_user_rules(tenant: str) -> tuple[str, ...]:
    """Key, channel and command rules of the tenant's API (no password).

    Enqueue, read and write its messages and its event stream, read its session's status,
    delivery settings and the sandbox's outbox, ask for a new pairing
    window; nothing of the auth state, lease, owner, account pin or markers.
    """
    return (
        f"~{contract.message_key(tenant, '*')}",
        f"~{contract.event_stream_key(tenant)}",  # its creations append; its groups read, ack
        f"%R~{contract.status_key(tenant)}",
        f"%R~{contract.delivery_settings_key(tenant)}",
        f"%R~{contract.simulator_outbox_key(tenant)}",
        f"%W~{contract.control_key(tenant)}",
        *_rq_tenant_keys(tenant),
        "~rq:queues",
        "%R~rq:suspended",
        f"&{contract.qr_channel(tenant)}",
        f"&{contract.events_channel(tenant)}",
        f"&{contract.receipts_channel(tenant)}",
        *COMMAND_RULES,
    )


def setuser_arguments(rules: tuple[str, ...], password: str) -> tuple[str, ...]:
    """The arguments after ``ACL SETUSER <name>``: from scratch, enabled, one password.

    ``reset`` first, so the user ends exactly as ``rules`` say whatever it
    was before; Redis applies the whole command at once or not at all.
    """
    if not password or any(ch.isspace() for ch in password):
        msg = "a Redis password must be non-empty and have no whitespace"
        raise ValueError(msg)
    return ("reset", "on", f">{password}", "resetchannels", *rules)
