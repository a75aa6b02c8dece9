"""The operator's log: no line per watch event that only says its handler ran."""

from __future__ import annotations

import logging

import pytest

from wasp_operator.runner import drop_watch_handler_successes


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize("handler", ["session_changed", "pod_changed", "network_policy_changed"])
def test_a_watch_handlers_success_is_dropped(handler: str) -> None:
    assert not drop_watch_handler_successes(record(f"Handler '{handler}' succeeded."))


@pytest.mark.parametrize(
    "kept",
    [
        record("Handler 'clean_up' succeeded."),  # a deletion: once, worth a line
        record("Handler 'pod_changed' failed with an exception and will try again in 1 seconds"),
        record("Handler 'pod_changed' succeeded.", logging.WARNING),
        record("redis_user_made: wasp-session-acme (missing)"),
        record("Activity 'kubernetes_api' succeeded."),
    ],
)
def test_everything_else_is_kept(kept: logging.LogRecord) -> None:
    assert drop_watch_handler_successes(kept)
