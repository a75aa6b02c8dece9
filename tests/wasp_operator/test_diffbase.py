"""wasp needs no memory of the last handled spec, so kopf keeps none (``diffbase.py``).

The operator gives kopf an empty, already stored essence for every resource:
no deep copy per event, no extra patch per new resource. That is only right
while wasp registers no handler that runs on creation, update or resume; this
test fails the day one is added, saying where the memory is needed again.
"""

from __future__ import annotations

import kopf

import wasp_operator.handlers  # noqa: F401 - registering the handlers is importing them
from wasp_operator.config import OperatorConfig
from wasp_operator.diffbase import NoDiffBase
from wasp_operator.runner import operator_settings


def test_every_change_handler_of_wasp_is_a_deletion_handler() -> None:
    registry = kopf.get_default_registry()
    changing = registry._changing.get_all_handlers()  # noqa: SLF001 - kopf has no public listing
    assert changing, "the deletion handler is registered"
    reasons = {handler.reason for handler in changing}
    assert reasons == {kopf.Reason.DELETE}, (
        "a creation/update/resume handler needs kopf's diff-base: "
        "replace NoDiffBase in runner.operator_settings with a storing one"
    )


def test_the_operator_runs_with_the_empty_diff_base() -> None:
    settings = operator_settings(OperatorConfig())
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    body = kopf.Body({"metadata": {"name": "acme"}, "spec": {"transport": "simulator"}})
    storage = settings.persistence.diffbase_storage
    assert storage.fetch(body=body) == storage.build(body=body)  # kopf sees no change
