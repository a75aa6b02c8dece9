"""A Redis client that returns bytes, made from one that may decode.

RQ reads its job payloads as bytes, and the event stream may hold any bytes
a tenant wrote; a client built with ``decode_responses=True`` would fail on
both. ``binary_twin`` gives a client on the same server, with the same
credentials and connection class, that never decodes.
"""

from __future__ import annotations

import redis

__all__ = ["binary_twin"]


def binary_twin(client: redis.Redis) -> redis.Redis:
    """``client`` if it returns bytes, else a twin on the same server that does."""
    pool = client.connection_pool
    if not pool.connection_kwargs.get("decode_responses"):
        return client
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )
