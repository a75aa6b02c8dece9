"""The operator's command line and environment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasp import contract
from wasp_operator.cli import build_parser, config_from
from wasp_operator.config import (
    DEFAULT_SESSION_IMAGE,
    OperatorConfig,
    config_from_env,
    parse_port_range,
)


def test_the_environment_configures_the_operator() -> None:
    config = config_from_env(
        {
            contract.ENV_OPERATOR_NAMESPACE: "tenants",
            contract.ENV_OPERATOR_SESSION_IMAGE: "wasp:1.0",
            contract.ENV_OPERATOR_REDIS_SECRET: "shared-redis:dsn",
            contract.ENV_OPERATOR_STANDALONE: "true",
            contract.ENV_OPERATOR_LIVENESS: "http://0.0.0.0:8080/healthz",
            contract.ENV_OPERATOR_METRICS_PORT: "9090",
        }
    )
    assert config == OperatorConfig(
        namespaces=("tenants",),
        session_image="wasp:1.0",
        redis_secret="shared-redis",
        redis_secret_key="dsn",
        standalone=True,
        liveness_endpoint="http://0.0.0.0:8080/healthz",
        metrics_port=9090,
    )
    assert config_from_env({}) == OperatorConfig(session_image=DEFAULT_SESSION_IMAGE)


def test_flags_win_over_the_environment() -> None:
    environ = {contract.ENV_OPERATOR_NAMESPACE: "tenants", contract.ENV_OPERATOR_STANDALONE: "1"}
    args = build_parser().parse_args(
        ["-A", "--peering", "--redis-secret", "r", "--session-image", "x"]
    )
    config = config_from(args, environ)
    assert config.namespaces == ()
    assert config.standalone is False
    assert (config.redis_secret, config.redis_secret_key) == ("r", "url")
    assert config.session_image == "x"
    assert config_from(build_parser().parse_args([]), environ).namespaces == ("tenants",)


def test_bad_settings_are_refused_saying_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="needs a name"):
        config_from_env({contract.ENV_OPERATOR_REDIS_SECRET: ":key"})
    with pytest.raises(ValueError, match="from 1 to 65535"):
        config_from_env({contract.ENV_OPERATOR_METRICS_PORT: "http"})


def test_help_names_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wasp_operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("usage: wasp-operator")
    flags = ("--namespace", "--session-image", "--redis-secret", "--standalone", "--liveness")
    for flag in (*flags, "--metrics-port"):
        assert flag in result.stdout


def test_the_admin_secrets_namespace_and_the_resync_are_settings() -> None:
    environ = {
        contract.ENV_OPERATOR_REDIS_SECRET_NAMESPACE: "wasp-system",
        contract.ENV_OPERATOR_RESYNC_SECONDS: "5",
    }
    config = config_from_env(environ)
    assert (config.redis_secret_namespace, config.resync_seconds) == ("wasp-system", 5.0)
    assert (OperatorConfig().redis_secret_namespace, OperatorConfig().resync_seconds) == (None, 30)
    args = build_parser().parse_args(
        ["--redis-secret-namespace", "platform", "--resync-seconds", "2.5"]
    )
    flagged = config_from(args, environ)
    assert (flagged.redis_secret_namespace, flagged.resync_seconds) == ("platform", 2.5)
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="positive number of seconds"):
            config_from_env({contract.ENV_OPERATOR_RESYNC_SECONDS: bad})


def test_the_resync_rate_cap_is_a_setting() -> None:
    assert OperatorConfig().max_resyncs_per_second == 50
    environ = {contract.ENV_OPERATOR_MAX_RESYNCS_PER_SECOND: "12.5"}
    assert config_from_env(environ).max_resyncs_per_second == 12.5
    args = build_parser().parse_args(["--max-resyncs-per-second", "3"])
    assert config_from(args, environ).max_resyncs_per_second == 3
    for bad in ("0", "-1", "often", "nan", "inf"):
        with pytest.raises(ValueError, match="positive number per second"):
            config_from_env({contract.ENV_OPERATOR_MAX_RESYNCS_PER_SECOND: bad})


# ---------------------------------------------------------------- session pods on the host network
def test_session_host_ports_are_a_range_from_the_environment_or_the_flag() -> None:
    assert OperatorConfig().session_host_ports is None  # the pod network, port 8080
    assert config_from_env({}).session_host_ports is None
    assert (
        config_from_env({contract.ENV_OPERATOR_SESSION_HOST_PORTS: " "}).session_host_ports is None
    )
    environ = {contract.ENV_OPERATOR_SESSION_HOST_PORTS: "20000-20999"}
    assert config_from_env(environ).session_host_ports == (20000, 20999)
    assert config_from(build_parser().parse_args([]), environ).session_host_ports == (20000, 20999)
    flagged = config_from(
        build_parser().parse_args(["--session-host-ports", "31000-31000"]), environ
    )
    assert flagged.session_host_ports == (31000, 31000)
    cleared = config_from(build_parser().parse_args(["--session-host-ports", ""]), environ)
    assert cleared.session_host_ports is None


@pytest.mark.parametrize(
    "bad", ["20000", "20000-", "-20000", "a-b", "80-90", "1023-2000", "3000-2000", "60000-65536"]
)
def test_a_bad_host_port_range_is_refused_saying_how_to_write_one(bad: str) -> None:
    with pytest.raises(ValueError, match=r"FIRST-LAST with 1024 <= FIRST <= LAST <= 65535"):
        config_from_env({contract.ENV_OPERATOR_SESSION_HOST_PORTS: bad})


def test_a_bad_host_port_flag_stops_the_operator_with_the_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wasp_operator", "--session-host-ports", "8080-80"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2  # argparse's usage error: kopf never started
    assert result.stderr.startswith("usage: wasp-operator")
    assert "FIRST-LAST" in result.stderr
    assert "'8080-80'" in result.stderr


@given(text=st.text(max_size=40) | st.from_regex(r"\A ?[0-9]{1,6} ?- ?[0-9]{1,6} ?\Z"))
def test_any_text_is_a_valid_port_range_or_refused_with_a_reason(text: str) -> None:
    try:
        parsed = parse_port_range(text)
    except ValueError as error:
        refusal = str(error)
    else:
        if parsed is None:
            assert not text.strip()
            return
        first, last = parsed
        assert 1024 <= first <= last <= 65535
        assert [int(part) for part in text.split("-")] == [first, last]  # the numbers written
        return
    assert "FIRST-LAST" in refusal
    assert repr(text.strip()) in refusal


def test_a_replica_is_named_without_asking_the_user_database() -> None:
    from wasp_operator.runner import own_identity  # noqa: PLC0415

    assert own_identity({"POD_ID": "wasp-operator-7c6d-kl6xh"}) == "wasp-operator-7c6d-kl6xh"
    first, second = own_identity({}), own_identity({})
    assert first.startswith("wasp-operator@")
    assert first != second  # two processes on one host never share a name
