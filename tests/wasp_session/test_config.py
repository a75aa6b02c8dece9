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


# ---------------------------------------------------------------- secrets as files
def files_env(
    tmp_path: Path, url: str = "redis://redis:6379/0\n", key: str = KEY
) -> dict[str, str]:
    """A pod's environment: the secrets in files (as Secret volumes), none in the env."""
    (tmp_path / "url").write_text(url, encoding="utf-8")
    (tmp_path / "key").write_text(f"  {key}\n", encoding="utf-8")
    return {
        contract.ENV_TENANT: "acme",
        contract.ENV_REDIS_URL_FILE: str(tmp_path / "url"),
        contract.ENV_AUTH_KEY_FILE: str(tmp_path / "key"),
    }


def test_secrets_are_read_from_their_files_without_surrounding_whitespace(tmp_path: Path) -> None:
    config = load_config(files_env(tmp_path))
    assert config.redis_url == "redis://redis:6379/0"
    assert config.auth_key == bytes(32)


@pytest.mark.parametrize(
    ("plain", "file_variable"),
    [
        (contract.ENV_REDIS_URL, contract.ENV_REDIS_URL_FILE),
        (contract.ENV_AUTH_KEY, contract.ENV_AUTH_KEY_FILE),
    ],
)
def test_a_secret_set_both_ways_is_refused_rather_than_guessed(
    tmp_path: Path, plain: str, file_variable: str
) -> None:
    env = {**files_env(tmp_path), plain: MINIMAL[plain]}
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert caught.value.variable == plain
    assert file_variable in caught.value.problem
    assert MINIMAL[plain] not in str(caught.value)  # the secret itself is never quoted


@pytest.mark.parametrize("file_variable", [contract.ENV_REDIS_URL_FILE, contract.ENV_AUTH_KEY_FILE])
def test_a_missing_secret_file_names_the_variable_and_the_path(
    tmp_path: Path, file_variable: str
) -> None:
    env = {**files_env(tmp_path), file_variable: str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert caught.value.variable == file_variable
    assert str(tmp_path / "nowhere") in str(caught.value)
    assert "No such file" in str(caught.value)


def test_an_empty_or_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    env = files_env(tmp_path, url="\n")
    with pytest.raises(ConfigError, match="is empty") as caught:
        load_config(env)
    assert caught.value.variable == contract.ENV_REDIS_URL_FILE
    env = {**files_env(tmp_path), contract.ENV_AUTH_KEY_FILE: str(tmp_path)}  # a directory
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load_config(env)
    assert caught.value.variable == contract.ENV_AUTH_KEY_FILE


def test_a_bad_secret_in_a_file_names_the_file_variable_and_not_the_secret(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(files_env(tmp_path, url="http://user:hunter2@redis:6379\n"))
    assert caught.value.variable == contract.ENV_REDIS_URL_FILE
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="32 bytes") as caught:
        load_config(files_env(tmp_path, key="c2hvcnQ="))
    assert caught.value.variable == contract.ENV_AUTH_KEY_FILE


def test_neither_form_of_a_secret_is_required_error_naming_both() -> None:
    env = {contract.ENV_TENANT: "acme", contract.ENV_AUTH_KEY: KEY}
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert caught.value.variable == contract.ENV_REDIS_URL
    assert "required" in caught.value.problem
    assert contract.ENV_REDIS_URL_FILE in caught.value.problem


# ---------------------------------------------------------------- owner uid
def test_the_owner_uid_is_optional_and_kept() -> None:
    assert load_config(MINIMAL).owner_uid is None
    uid = "7f3c2a1e-9b4d-4e8f-a2c1-0d5e6f7a8b9c"
    assert load_config({**MINIMAL, contract.ENV_OWNER_UID: f" {uid} "}).owner_uid == uid


@pytest.mark.parametrize("uid", ["two words", "x" * 200, "uid\nwith-newline", "ä"])
def test_a_malformed_owner_uid_is_refused(uid: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**MINIMAL, contract.ENV_OWNER_UID: uid})
    assert caught.value.variable == contract.ENV_OWNER_UID
    assert "\n" not in str(caught.value)
