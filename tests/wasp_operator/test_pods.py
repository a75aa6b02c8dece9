"""The session pod as built: locked down, probed, sized, configured by env, secrets as files."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import apply, eventually
from wasp import contract
from wasp_operator.cli import build_parser, config_from
from wasp_operator.config import OperatorConfig, config_from_env
from wasp_operator.pods import (
    DEFAULT_RESOURCES,
    build_auth_secret,
    build_pod,
    image_refusal,
    new_auth_key,
    spec_hash,
)
from wasp_operator.sessions import SecretRef, Session, session_from_body

CONFIG = OperatorConfig(session_image="registry.example/wasp:1.2.3")


def acme(**changes: Any) -> Session:  # noqa: ANN401 - any Session field
    body = {
        "apiVersion": "wasp.dev/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": {"name": "acme", "namespace": "tenants", "uid": "u-1", "generation": 1},
        "spec": {
            "pairing": {"method": "PairingCode", "phoneNumber": "+4915112345678"},
            "delivery": {"defaultRegion": "DE", "ttlSeconds": 120},
        },
    }
    session = session_from_body(body)
    return session.__class__(**{**session.__dict__, **changes})


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_the_pod_has_the_sessions_deterministic_name_and_a_controller_owner() -> None:
    pod = build_pod(acme(), CONFIG)
    assert pod["metadata"]["name"] == "wasp-session-acme"
    assert pod["metadata"]["namespace"] == "tenants"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "wasp.dev/v1alpha1",
        "kind": "WhatsAppSession",
        "name": "acme",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert pod["metadata"]["labels"][contract.LABEL_TENANT] == "acme"
    assert pod["metadata"]["labels"][contract.LABEL_SESSION] == "acme"
    assert pod["metadata"]["labels"][contract.LABEL_MANAGED_BY] == contract.OPERATOR_NAME


def test_the_pod_is_locked_down() -> None:
    pod = build_pod(acme(), CONFIG)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert spec["terminationGracePeriodSeconds"] >= 60


def test_the_database_lives_on_an_empty_dir_named_by_the_env() -> None:
    pod = build_pod(acme(), CONFIG)
    (container,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    data_dir = env_of(pod)[contract.ENV_DATA_DIR]["value"]
    assert "emptyDir" in volumes[mounts[data_dir]]


def test_probes_hit_the_sessions_health_endpoints() -> None:
    pod = build_pod(acme(), CONFIG)
    (container,) = pod["spec"]["containers"]
    port = env_of(pod)[contract.ENV_HEALTH_PORT]["value"]
    (declared,) = container["ports"]
    assert str(declared["containerPort"]) == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": declared["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": declared["name"]}


def test_the_container_runs_wasp_session_from_the_operators_image() -> None:
    (container,) = build_pod(acme(), CONFIG)["spec"]["containers"]
    assert container["command"] == ["wasp-session"]
    assert container["image"] == "registry.example/wasp:1.2.3"
    (overridden,) = build_pod(acme(image="mine:dev"), CONFIG)["spec"]["containers"]
    assert overridden["image"] == "mine:dev"


def test_settings_go_by_value_and_no_secret_goes_through_the_environment() -> None:
    env = env_of(build_pod(acme(), CONFIG))
    assert env[contract.ENV_TENANT]["value"] == "acme"
    assert env[contract.ENV_TRANSPORT]["value"] == "neonize"
    assert env[contract.ENV_PAIRING_METHOD]["value"] == "PairingCode"
    assert env[contract.ENV_PAIRING_PHONE]["value"] == "+4915112345678"
    assert env[contract.ENV_DEFAULT_REGION]["value"] == "DE"
    assert env[contract.ENV_TTL_SECONDS]["value"] == "120"
    assert env[contract.ENV_RETRY_ATTEMPTS]["value"] == "3"
    assert env[contract.ENV_RATE_PER_MINUTE]["value"] == "30"
    assert env[contract.ENV_POD_NAME]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert contract.ENV_REDIS_URL not in env
    assert contract.ENV_AUTH_KEY not in env
    for session in (acme(), acme(redis_secret=SecretRef("tenant-redis", "dsn"))):
        pod = build_pod(session, CONFIG)
        text = json.dumps(pod)
        assert "secretKeyRef" not in text
        assert "envFrom" not in text
        for variable in env_of(pod).values():
            assert set(variable.get("valueFrom", {})) <= {"fieldRef"}


def test_the_pod_reads_its_two_secrets_as_read_only_files() -> None:
    pod = build_pod(acme(), CONFIG)
    env = env_of(pod)
    (container,) = pod["spec"]["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"] for v in pod["spec"]["volumes"] if "secret" in v}
    files = {}
    for volume, secret in secrets.items():
        mount = mounts[volume]
        assert mount["readOnly"] is True
        assert "subPath" not in mount  # a subPath would never see a rotated Secret
        assert secret["defaultMode"] == 0o400
        (item,) = secret["items"]  # only the one key the session needs
        files[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    assert files == {
        env[contract.ENV_AUTH_KEY_FILE]["value"]: (
            contract.auth_secret_name("acme"),
            contract.AUTH_SECRET_KEY,
        ),
        env[contract.ENV_REDIS_URL_FILE]["value"]: (
            contract.session_redis_secret_name("acme"),
            contract.REDIS_SECRET_URL_KEY,
        ),
    }
    assert env[contract.ENV_AUTH_KEY_FILE]["value"].startswith(contract.SESSION_AUTH_SECRET_DIR)
    assert env[contract.ENV_REDIS_URL_FILE]["value"].startswith(contract.SESSION_REDIS_SECRET_DIR)


def test_the_pod_gets_only_the_secrets_the_operator_made_for_it() -> None:
    """Not the admin Redis Secret, not the API's credential: its own session user's URL."""
    for session in (acme(), acme(redis_secret=SecretRef("tenant-redis", "dsn"))):
        pod = build_pod(session, CONFIG)
        named = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
        assert named == {
            contract.auth_secret_name("acme"),
            contract.session_redis_secret_name("acme"),
        }
        assert "wasp-redis" not in json.dumps(pod["spec"])
        assert "tenant-redis" not in json.dumps(pod["spec"])
        assert contract.api_redis_secret_name("acme") not in json.dumps(pod["spec"])


def test_the_pod_knows_the_uid_of_the_resource_that_owns_it() -> None:
    pod = build_pod(acme(uid="3f1c-owner"), CONFIG)
    assert env_of(pod)[contract.ENV_OWNER_UID]["value"] == "3f1c-owner"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "3f1c-owner"


# Stands in for wasp-session: writes what it finds at the paths its env names.
READ_SECRET_FILES = """
import json, os, signal, stat, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
found = {}
for variable in (sys.argv[1], sys.argv[2]):
    path = os.environ[variable]
    found[variable] = [open(path).read(), stat.S_IMODE(os.stat(path).st_mode)]
found["secrets_in_env"] = sorted(k for k, v in os.environ.items() if v in sys.argv[3:])
with open(os.environ["REPORT"] + ".tmp", "w") as out:
    json.dump(found, out)
os.replace(os.environ["REPORT"] + ".tmp", os.environ["REPORT"])
while True:
    time.sleep(1)
"""


@pytest.mark.controlplane
def test_under_a_kubelet_the_session_finds_its_secrets_as_files_and_nowhere_else(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    session = acme(namespace=namespace)
    key, url = new_auth_key(), "redis://wasp-session-acme:s3cret@redis.example:6379/0"
    auth_secret = build_auth_secret(session, key)
    del auth_secret["metadata"]["ownerReferences"]  # no such resource: the GC would delete it
    apply(control_plane, namespace, auth_secret)
    control_plane.kubectl(
        "create", "secret", "generic", contract.session_redis_secret_name("acme"),
        "-n", namespace, f"--from-literal={contract.REDIS_SECRET_URL_KEY}={url}",
    )  # fmt: skip
    pod = build_pod(session, CONFIG)
    del pod["metadata"]["ownerReferences"]
    report = tmp_path / "report.json"
    files = [contract.ENV_AUTH_KEY_FILE, contract.ENV_REDIS_URL_FILE]
    command = [sys.executable, "-c", READ_SECRET_FILES, *files, key, url]
    stand_in = Kubelet(
        control_plane.kubeconfig,
        namespace,
        tmp_path / "kubelet",
        command=command,
        environment={"REPORT": str(report)},
    )
    try:
        apply(control_plane, namespace, pod)  # the API server accepts the pod as built
        eventually(report.exists, "the container ran", log=lambda: repr(stand_in.errors))
    finally:
        stand_in.stop()
    found = json.loads(report.read_text(encoding="utf-8"))
    assert found[contract.ENV_AUTH_KEY_FILE] == [key, 0o400]
    assert found[contract.ENV_REDIS_URL_FILE] == [url, 0o400]
    assert found["secrets_in_env"] == []


def test_a_session_without_resources_gets_sized_defaults() -> None:
    (container,) = build_pod(acme(), CONFIG)["spec"]["containers"]
    resources = container["resources"]
    assert set(resources) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}
    assert resources == {kind: dict(quantities) for kind, quantities in DEFAULT_RESOURCES.items()}


def test_every_env_name_comes_from_the_contract() -> None:
    names = set(env_of(build_pod(acme(), CONFIG)))
    known = {value for key, value in vars(contract).items() if key.startswith("ENV_")}
    assert names <= known


def test_pod_template_settings_reach_the_pod() -> None:
    session = acme(
        resources={"limits": {"memory": "256Mi"}},
        node_selector={"pool": "wasp"},
        tolerations=({"key": "wasp", "operator": "Exists", "effect": "NoSchedule"},),
    )
    pod = build_pod(session, CONFIG)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"memory": "256Mi"}}
    assert pod["spec"]["nodeSelector"] == {"pool": "wasp"}
    assert pod["spec"]["tolerations"] == [
        {"key": "wasp", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_the_spec_hash_changes_with_the_spec_but_not_with_identity_suspension_or_upgrade() -> None:
    base = spec_hash(acme(), CONFIG)
    annotation = build_pod(acme(), CONFIG)["metadata"]["annotations"]
    assert annotation[contract.ANNOTATION_SPEC_HASH] == base
    assert spec_hash(acme(generation=7, suspend=True, uid="u-2"), CONFIG) == base
    assert spec_hash(acme(ttl_seconds=60), CONFIG) != base
    assert spec_hash(acme(transport="simulator"), CONFIG) != base
    assert spec_hash(acme(image="mine:dev"), CONFIG) != base
    # Upgrading the operator moves its default session image: no tenant restarts for it,
    # while a pod built after the upgrade runs the new image.
    upgraded = OperatorConfig(
        session_image="registry.example/wasp:1.2.4",
        allowed_session_images=("mine:dev",),
        scraper_namespaces=("monitoring",),
    )
    assert spec_hash(acme(), upgraded) == base
    assert build_pod(acme(), upgraded)["spec"]["containers"][0]["image"].endswith(":1.2.4")


def test_pods_made_by_the_previous_release_keep_their_hash() -> None:
    """Upgrading restarts no tenant: the hash of a pod made before this release still matches.

    The digests were computed by the release before tenant isolation, which
    put secrets into env and set no default resources: neither moved them.
    """
    assert spec_hash(acme(), CONFIG) == "073516e099668c56"
    assert spec_hash(acme(image="mine:dev"), CONFIG) == "38528ad49b56b031"
    assert spec_hash(acme(redis_secret=SecretRef("r", "k")), CONFIG) == "c16cf8d3851f0078"


def test_the_auth_key_secret_holds_32_random_bytes_and_is_owned() -> None:
    key = new_auth_key()
    assert len(base64.b64decode(key)) == 32
    assert new_auth_key() != key
    secret = build_auth_secret(acme(), key)
    assert secret["metadata"]["name"] == contract.auth_secret_name("acme")
    assert secret["stringData"] == {contract.AUTH_SECRET_KEY: key}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_the_tenant_defaults_to_the_resources_name() -> None:
    assert acme().tenant == "acme"
    body = {"metadata": {"name": "acme", "namespace": "n"}, "spec": {"tenantId": "acme-eu"}}
    assert session_from_body(body).tenant == "acme-eu"


# ---------------------------------------------------------------- the image allowlist
ALLOWING = OperatorConfig(
    session_image="registry.example/wasp:1.2.3",
    allowed_session_images=("registry.example/wasp:1.3.0-rc1", "registry.example/wasp-debug:1"),
)


def test_no_override_and_allowed_images_run() -> None:
    assert image_refusal(acme(), CONFIG) is None
    assert image_refusal(acme(), ALLOWING) is None
    assert image_refusal(acme(image="registry.example/wasp:1.2.3"), CONFIG) is None
    assert image_refusal(acme(image="registry.example/wasp-debug:1"), ALLOWING) is None


def test_another_image_is_refused_naming_it_and_the_allowed_ones() -> None:
    reason = image_refusal(acme(image="evil.example/miner:latest"), ALLOWING)
    assert reason is not None
    assert "'evil.example/miner:latest'" in reason
    for allowed in ALLOWING.allowed_images:
        assert allowed in reason
    assert contract.ENV_OPERATOR_SESSION_IMAGES in reason
    # Only exact references: the same repository with another tag is another image.
    assert image_refusal(acme(image="registry.example/wasp:1.2.4"), ALLOWING) is not None
    assert image_refusal(acme(image="registry.example/wasp"), ALLOWING) is not None


@pytest.mark.isolation
@given(image=st.text(min_size=1, max_size=300))
def test_any_image_string_is_allowed_exactly_when_listed_and_refused_in_one_bounded_line(
    image: str,
) -> None:
    reason = image_refusal(acme(image=image), ALLOWING)
    if image in ALLOWING.allowed_images:
        assert reason is None
        return
    assert reason is not None
    assert "\n" not in reason
    assert "\r" not in reason
    assert reason.endswith(".")
    assert ", ".join(ALLOWING.allowed_images) in reason
    limit = contract.MAX_ECHOED_INPUT_CHARS
    echoed = image if len(image) <= limit else image[:limit] + "..."
    assert repr(echoed) in reason
    assert len(reason) <= 10 * limit + 400  # repr spells a character in at most 10


def test_the_allowlist_comes_from_the_environment_or_the_flag() -> None:
    environ = {
        contract.ENV_OPERATOR_SESSION_IMAGE: "wasp:2",
        contract.ENV_OPERATOR_SESSION_IMAGES: " wasp:2-debug , ,mirror.local/wasp:2,wasp:2-debug",
    }
    config = config_from_env(environ)
    assert config.allowed_session_images == ("wasp:2-debug", "mirror.local/wasp:2")
    assert config.allowed_images == ("wasp:2", "wasp:2-debug", "mirror.local/wasp:2")
    assert config_from_env({}).allowed_images == (config_from_env({}).session_image,)
    flagged = config_from(
        build_parser().parse_args(["--allowed-session-images", "other:1"]), environ
    )
    assert flagged.allowed_images == ("wasp:2", "other:1")
    assert config_from(build_parser().parse_args([]), environ) == config
