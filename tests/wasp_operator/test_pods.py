"""The session pod as built: locked down, probed, configured by env, secrets by reference."""

from __future__ import annotations

import base64
from typing import Any

from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.pods import build_auth_secret, build_pod, new_auth_key, spec_hash
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


def test_settings_go_by_value_and_secrets_only_by_reference() -> None:
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
    assert env[contract.ENV_REDIS_URL] == {
        "name": contract.ENV_REDIS_URL,
        "valueFrom": {"secretKeyRef": {"name": "wasp-redis", "key": "url"}},
    }
    assert env[contract.ENV_AUTH_KEY] == {
        "name": contract.ENV_AUTH_KEY,
        "valueFrom": {"secretKeyRef": {"name": "wasp-session-acme-auth", "key": "key"}},
    }
    own = env_of(build_pod(acme(redis_secret=SecretRef("tenant-redis", "dsn")), CONFIG))
    assert own[contract.ENV_REDIS_URL]["valueFrom"]["secretKeyRef"] == {
        "name": "tenant-redis",
        "key": "dsn",
    }


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
    upgraded = OperatorConfig(session_image="registry.example/wasp:1.2.4")
    assert spec_hash(acme(), upgraded) == base
    assert build_pod(acme(), upgraded)["spec"]["containers"][0]["image"].endswith(":1.2.4")


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
