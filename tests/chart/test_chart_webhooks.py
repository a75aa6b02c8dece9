"""The chart's ``webhooks.allowedNetworks``: what the operator lets session webhooks reach."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wasp import contract
from wasp_operator.config import config_from_env

Render = Callable[..., list[dict[str, Any]]]


def operator_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_by_default_webhooks_reach_public_addresses_only(render: Render) -> None:
    env = operator_env(render())
    assert contract.ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS not in env
    assert config_from_env(env).webhook_allowed_networks == ()


def test_allowed_networks_reach_the_operator(render: Render) -> None:
    env = operator_env(render("webhooks.allowedNetworks={10.20.0.0/16,fd00::/8}"))
    assert config_from_env(env).webhook_allowed_networks == ("10.20.0.0/16", "fd00::/8")
