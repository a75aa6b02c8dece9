"""The operator's Events are paced: a single one goes at once, a burst's tail follows.

A thousand tenants changing phase at once must not post a thousand Events
in the same second as their status patches (``event_pacer.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from wasp_operator.event_pacer import EventPacer

Posted = list[tuple[str, str]]  # (object name, reason)


def body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "wasp.dev/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": {"name": name, "namespace": "tenants", "uid": f"uid-{name}"},
        "spec": {"big": "x" * 1000},
        "status": {"phase": "Connected"},
    }


def recorder(posted: Posted) -> Any:  # noqa: ANN401 - the pacer's post callable
    def post(about: dict[str, Any], kind: str, reason: str, message: str) -> None:
        assert set(about) == {"apiVersion", "kind", "metadata"}, "only the reference is kept"
        assert kind in {"Normal", "Warning"}
        assert message
        posted.append((about["metadata"]["name"], reason))

    return post


def dropped() -> float:
    return REGISTRY.get_sample_value("wasp_operator_events_dropped_total") or 0.0


def test_a_single_event_goes_at_once_and_a_burst_follows_in_order_at_the_rate() -> None:
    async def scenario() -> tuple[Posted, Posted, Posted]:
        posted: Posted = []
        pacer = EventPacer(rate=100.0, burst=10, post=recorder(posted))
        pacer.post(body("first"), "Normal", "Connected", "Connected.")
        await asyncio.sleep(0.05)
        alone = list(posted)
        for index in range(60):
            pacer.post(body(f"t{index}"), "Normal", "Reconnecting", "Reconnecting.")
        await asyncio.sleep(0.05)
        early = list(posted)
        for _ in range(200):
            if len(posted) == 61:
                break
            await asyncio.sleep(0.05)
        await pacer.close()
        return alone, early, posted

    alone, early, posted = asyncio.run(scenario())
    assert alone == [("first", "Connected")]
    assert len(early) < 61, "a burst past the bucket is not posted all at once"
    assert posted == [("first", "Connected")] + [(f"t{i}", "Reconnecting") for i in range(60)]


def test_past_the_limit_the_oldest_waiting_are_dropped_and_counted() -> None:
    async def scenario() -> Posted:
        posted: Posted = []
        pacer = EventPacer(rate=1000.0, burst=1, max_pending=5, post=recorder(posted))
        for index in range(8):  # nothing runs between these: all wait
            pacer.post(body(f"t{index}"), "Warning", "Failed", "Failed.")
        for _ in range(100):
            if len(posted) == 5:
                break
            await asyncio.sleep(0.01)
        await pacer.close()
        return posted

    before = dropped()
    posted = asyncio.run(scenario())
    assert [name for name, _ in posted] == [f"t{i}" for i in range(3, 8)]
    assert dropped() - before == 3


def test_a_failing_post_does_not_stop_the_others() -> None:
    async def scenario() -> Posted:
        posted: Posted = []
        record = recorder(posted)

        def post(about: dict[str, Any], kind: str, reason: str, message: str) -> None:
            if about["metadata"]["name"] == "bad":
                msg = "no queue"
                raise RuntimeError(msg)
            record(about, kind, reason, message)

        pacer = EventPacer(post=post)
        for name in ("a", "bad", "b"):
            pacer.post(body(name), "Normal", "Pending", "Pending.")
        for _ in range(100):
            if len(posted) == 2:
                break
            await asyncio.sleep(0.01)
        await pacer.close()
        return posted

    assert asyncio.run(scenario()) == [("a", "Pending"), ("b", "Pending")]
