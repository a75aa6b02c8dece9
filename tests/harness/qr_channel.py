"""The QR codes a tenant's session publishes, as a subscriber of its QR channel sees them.

Subscribe before the pod starts (or before it might show a code) to know
every code it published: a test that expects none (an account restored
without a scan) asserts the list stays empty.
"""

from __future__ import annotations

import redis

from wasp import contract


class QrChannel:
    """Every QR string published on ``whatsapp:qr:<tenant>`` since it was made."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Subscribe now."""
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(contract.qr_channel(tenant))
        self.codes: list[str] = []

    def drain(self) -> list[str]:
        """Read what arrived; return every code seen so far."""
        while (message := self._pubsub.get_message(timeout=0.05)) is not None:
            self.codes.append(str(message["data"]))
        return self.codes

    def close(self) -> None:
        """Unsubscribe."""
        self._pubsub.close()
