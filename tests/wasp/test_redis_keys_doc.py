"""docs/redis.md lists every Redis key and channel that the contract spells."""

from __future__ import annotations

import inspect
from pathlib import Path

from wasp import contract

DOC = Path(__file__).resolve().parents[2] / "docs" / "redis.md"


def redis_name_functions() -> dict[str, str]:
    """Each contract function that names a key, channel or queue, with its name for tenant "t"."""
    names = {}
    for name, function in inspect.getmembers(contract, inspect.isfunction):
        if not name.endswith(("_key", "_channel", "_queue")) or name.startswith("tenant_of_"):
            continue  # not a key (tenant_of_events_channel parses a channel's name)
        parameters = inspect.signature(function).parameters
        names[name] = function(*("t" for _ in parameters))
    return names


def test_every_redis_key_of_the_contract_is_documented_with_its_pattern() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in text.splitlines()
        if line.startswith("| `")
    }
    functions = redis_name_functions()
    assert len(functions) >= 20
    assert set(functions) == set(rows)
    for name, example in functions.items():
        pattern = rows[name].split("|")[2]
        # The documented pattern, with its placeholders filled in with "t", is the real name.
        filled = pattern.strip().strip("`").split("`")[0]
        for placeholder in ("<tenant>", "<id>", "<whatsapp id>", "<phone>"):
            filled = filled.replace(placeholder, "t")
        assert filled == example, f"{name}: docs say {pattern.strip()}, the code uses {example}"
