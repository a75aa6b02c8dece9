"""The chart's values: documented key by key, and checked by a closed schema.

A platform team's typo (``replica: 3``) or wrong word (``pullPolicy:
Sometimes``) must fail the install with the key named, not be ignored.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasp import contract

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"
VALUES_TEXT = (CHART / "values.yaml").read_text(encoding="utf-8")
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
Helm = Callable[..., subprocess.CompletedProcess[str]]
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9_-]*):")


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its ``$ref`` (to ``#/definitions/...``) followed."""
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_objects(node: dict[str, Any], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object-typed node of the schema, with where it is."""
    node = resolve(node)
    for option in node.get("anyOf", []):
        yield from schema_objects(option, where)
    if node.get("type") == "object":
        yield where, node
        for name, child in node.get("properties", {}).items():
            yield from schema_objects(child, f"{where}.{name}")
    if node.get("type") == "array" and "items" in node:
        yield from schema_objects(node["items"], f"{where}[]")


def value_paths(values: dict[str, Any], node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every key of values.yaml, not descending into maps of user data (labels)."""
    for key, value in values.items():
        yield prefix + key
        child = resolve(resolve(node).get("properties", {}).get(key, {}))
        if isinstance(value, dict) and value and "properties" in child:
            yield from value_paths(value, child, f"{prefix}{key}.")


def schema_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, child in resolve(node).get("properties", {}).items():
        yield prefix + key
        if "properties" in resolve(child):
            yield from schema_paths(child, f"{prefix}{key}.")


def test_chart_passes_strict_lint(helm: Helm) -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout


def test_every_values_key_has_prose_above_it() -> None:
    undocumented = []
    lines = VALUES_TEXT.splitlines()
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if match is None:
            continue
        above = lines[number - 1] if number else ""
        if not above.startswith(f"{match['indent']}# "):
            undocumented.append(f"line {number + 1}: {match['key']}")
    assert not undocumented, f"values.yaml keys without a comment above: {undocumented}"


def test_schema_describes_exactly_the_keys_of_values() -> None:
    assert set(value_paths(VALUES, SCHEMA)) == set(schema_paths(SCHEMA))


def test_schema_refuses_unknown_keys_at_every_level() -> None:
    open_objects = [
        where
        for where, node in schema_objects(SCHEMA, "values")
        if node.get("additionalProperties") is not False
        # A map of names to strings (nodeSelector, annotations) names user data.
        and node.get("additionalProperties") != {"type": "string"}
    ]
    assert not open_objects, f"objects that accept unknown keys: {open_objects}"


def test_chart_defaults_match_contract_and_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{chart["appVersion"]}"' in pyproject
    assert VALUES["redis"]["existingSecretKey"] == contract.DEFAULT_REDIS_SECRET_KEY
    assert "NOT FOR PRODUCTION" in VALUES_TEXT


@pytest.mark.parametrize("command", ["template", "lint"])
@pytest.mark.parametrize(
    ("setting", "says"),
    [
        pytest.param("replica=2", ["additional properties 'replica' not allowed"], id="unknown"),
        pytest.param(
            "operator.replica=2",
            ["at '/operator'", "additional properties 'replica' not allowed"],
            id="nested-unknown",
        ),
        pytest.param(
            "image.pullPolicy=Sometimes",
            ["at '/image/pullPolicy'", "'IfNotPresent', 'Always', 'Never'"],
            id="bad-enum",
        ),
        pytest.param("operator.replicas=0", ["at '/operator/replicas'"], id="no-replicas"),
        pytest.param("operator.verbose=loud", ["at '/operator/verbose'"], id="bad-type"),
        pytest.param(
            "watchNamespaces={Tenants_A}", ["at '/watchNamespaces/0'"], id="bad-namespace"
        ),
        pytest.param(
            "watchNamespace=tenants",
            ["additional properties 'watchNamespace' not allowed"],
            id="old-single-namespace",
        ),
        pytest.param(
            "redis.inChart.password=short", ["at '/redis/inChart/password'"], id="weak-password"
        ),
        pytest.param(
            "redis.inChart.password=sixteen-chars-but@url",
            ["at '/redis/inChart/password'"],
            id="password-needing-escapes",
        ),
        pytest.param(
            "allowedSessionImages={Not An Image}",
            ["at '/allowedSessionImages/0'"],
            id="bad-image",
        ),
        pytest.param(
            "networkPolicy.apiServerPorts={0}",
            ["at '/networkPolicy/apiServerPorts/0'"],
            id="bad-port",
        ),
        pytest.param("redis.url=http://redis:6379", ["at '/redis/url'"], id="not-a-redis-url"),
        pytest.param(
            "sessionPods.healthPortRange=80-90",
            ["at '/sessionPods/healthPortRange'"],
            id="privileged-host-ports",
        ),
        pytest.param(
            "sessionPods.healthPortRange=20000",
            ["at '/sessionPods/healthPortRange'"],
            id="host-port-not-a-range",
        ),
        pytest.param(
            "sessionPods.healthPortRange=20000-65536",
            ["at '/sessionPods/healthPortRange'"],
            id="host-port-beyond-65535",
        ),
        pytest.param(
            "operator.extraEnv[0].value=1",
            ["at '/operator/extraEnv/0'", "'name'"],
            id="env-no-name",
        ),
    ],
)
def test_values_outside_schema_are_refused_naming_the_key(
    helm: Helm, command: str, setting: str, says: list[str]
) -> None:
    args = ["lint", "--strict"] if command == "lint" else ["template", "wasp"]
    result = helm(*args, str(CHART), "--set", setting, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for text in says:
        assert text in output


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        pytest.param(
            ["redis.url=redis://r:6379/0", "redis.inChart.enabled=true"],
            "set only one of redis.url, redis.existingSecret and redis.inChart.enabled "
            "(got redis.url, redis.inChart.enabled)",
            id="url-and-in-chart",
        ),
        pytest.param(
            ["watchNamespaces=null"],
            "watchNamespaces is empty: list the namespaces with WhatsAppSessions, "
            "or set rbac.clusterWide=true",
            id="nothing-to-watch",
        ),
        pytest.param(
            ["sessionPods.hostNetwork=true", "sessionPods.healthPortRange=29999-20000"],
            'sessionPods.healthPortRange must be FIRST-LAST with FIRST <= LAST, got "29999-20000"',
            id="host-ports-backwards",
        ),
    ],
)
def test_contradictory_redis_settings_are_refused(
    helm: Helm, settings: list[str], says: str
) -> None:
    args = ["template", "wasp", str(CHART)]
    for setting in settings:
        args += ["--set", setting]
    result = helm(*args, check=False)
    assert result.returncode != 0
    assert says in result.stderr
