"""Configuration from the environment: defaults, and one clear reason per bad value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from wasp import contract
from wasp_session.config import load_config
from wasp_session.errors import ConfigError

KEY = base64.b64encode(bytes(32)).decode()
MINIMAL = {
    contract.ENV_TENANT: "acme",
    contract.ENV_REDIS_URL: "redis://localhost:6379/0",
    contract.ENV_AUTH_KEY: KEY,
}


def test_minimal_env_uses_production_defaults() -> None:
    config = load_config(MINIMAL)
    assert config.transport == "neonize"
    assert config.pairing_method == "QR"
    assert config.data_dir == Path("/data")
    assert config.timings.simulator_qr == (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
    assert config.timings.lease_ttl == 15
    assert config.auth_key == bytes(32)


def test_pairing_phone_is_kept_as_digits() -> None:
    config = load_config(
        {
            **MINIMAL,
            contract.ENV_PAIRING_METHOD: "PairingCode",
            contract.ENV_PAIRING_PHONE: "+49 151 12345678",
        }
    )
    assert config.pairing_phone == "4915112345678"


@pytest.mark.parametrize(
    ("override", "variable"),
    [
        ({contract.ENV_TENANT: ""}, contract.ENV_TENANT),
        ({contract.ENV_REDIS_URL: "localhost"}, contract.ENV_REDIS_URL),
        ({contract.ENV_AUTH_KEY: "AAAA"}, contract.ENV_AUTH_KEY),
        ({contract.ENV_DATA_DIR: "relative/dir"}, contract.ENV_DATA_DIR),
        ({contract.ENV_DEFAULT_REGION: "Germany"}, contract.ENV_DEFAULT_REGION),
        ({contract.ENV_TTL_SECONDS: "-5"}, contract.ENV_TTL_SECONDS),
        ({contract.ENV_MESSAGE_TEMPLATE: "no code"}, contract.ENV_MESSAGE_TEMPLATE),
        (
            {contract.ENV_MESSAGE_TEMPLATE: "{code.__init__.__globals__}"},
            contract.ENV_MESSAGE_TEMPLATE,
        ),
        ({contract.ENV_MESSAGE_TEMPLATE: "{code[0]}"}, contract.ENV_MESSAGE_TEMPLATE),
        ({contract.ENV_MESSAGE_TEMPLATE: "{code:>9}"}, contract.ENV_MESSAGE_TEMPLATE),
        ({contract.ENV_MESSAGE_TEMPLATE: "{code}{secret}"}, contract.ENV_MESSAGE_TEMPLATE),
        ({contract.ENV_MESSAGE_TEMPLATE: "{code}{\n}"}, contract.ENV_MESSAGE_TEMPLATE),
        (
            {contract.ENV_RECONNECT_BASE_SECONDS: "10", contract.ENV_RECONNECT_MAX_SECONDS: "1"},
            contract.ENV_RECONNECT_MAX_SECONDS,
        ),
    ],
)
def test_a_bad_value_names_its_variable(override: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, **override})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert "\n" not in str(caught.value)


def test_a_template_with_only_code_minutes_and_literal_braces_is_kept() -> None:
    template = "{{wasp}} Your code is {code}, valid {minutes} min."
    config = load_config({**MINIMAL, contract.ENV_MESSAGE_TEMPLATE: template})
    assert config.delivery.message_template == template
