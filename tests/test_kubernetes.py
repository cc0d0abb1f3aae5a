"""deploy/kubernetes/ against the Kubernetes API schema (kubernetes-validate, which ships the
schemas: no cluster and no network needed) and against what the appliance really needs.

No cluster runs here: these tests check the manifests' shape and honesty, not a rollout."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bootpack.appliance.runtime import parse_peer
from bootpack.registry.reference import parse_reference
from tests.support.appliance_env import CAPS

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes still in upstream support when this was written, and the newest the
# package knows.
VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def daemonset() -> dict[str, Any]:
    [ds] = [d for _, d in documents() if d["kind"] == "DaemonSet"]
    return ds


def container() -> dict[str, Any]:
    [c] = daemonset()["spec"]["template"]["spec"]["containers"]
    return c


def env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_api_schema(version: str) -> None:
    docs = documents()
    assert {d["kind"] for _, d in docs} == {"Namespace", "ConfigMap", "DaemonSet"}
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}: {exc}")


def test_the_validation_can_fail() -> None:
    broken = copy.deepcopy(daemonset())
    broken["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    unknown = copy.deepcopy(daemonset())
    unknown["spec"]["template"]["spec"]["containers"][0]["capabilites"] = {}  # typo: strict mode
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, VERSIONS[-1], strict=True)


def test_runs_on_labelled_nodes_on_the_host_network() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"bootpack.dev/provisioning": "true"}
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert daemonset()["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1


def test_only_the_capabilities_the_readme_lists() -> None:
    security = container()["securityContext"]
    assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"]
    added = set(security["capabilities"]["add"])
    assert added == set(CAPS)  # what the appliance tests run with
    readme = (REPO / "README.md").read_text()
    listed = set(re.findall(r"--cap-add ([A-Z_]+)", readme))
    assert added == listed


def test_probes_are_bootpack_health() -> None:
    c = container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][:2] == ["bootpack", "health"]


def test_the_bundle_version_is_one_value() -> None:
    text = "".join(p.read_text() for p in FOLDER.glob("*.yaml"))
    assert [e["name"] for e in container()["env"]].count("BOOTPACK_BUNDLE_REF") == 1
    assert text.count(env()["BOOTPACK_BUNDLE_REF"]) == 1  # nowhere else: one place to change
    ref = parse_reference(env()["BOOTPACK_BUNDLE_REF"])
    assert ref.tag or ref.digest
    assert env()["BOOTPACK_DHCP"] in ("proxy", "server")
    # The commented HA example parses as the appliance parses --peer.
    example = re.search(r'BOOTPACK_PEERS\n\s*#\s*value: "([^"]+)"', text)
    assert example is not None
    assert [parse_peer(p).name for p in example[1].split()] == ["boot-a", "boot-b"]


def test_volumes_for_writable_state_and_the_public_key_only() -> None:
    c, spec = container(), daemonset()["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert {"/var/lib/bootpack", "/run/bootpack", "/srv/bootpack/roots"} <= set(mounts)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/var/lib/bootpack"]]["hostPath"]["path"] == "/var/lib/bootpack"
    assert env()["BOOTPACK_VERIFY"].startswith("/etc/bootpack/keys/")
    [key] = [d for _, d in documents() if d["kind"] == "ConfigMap"]
    assert all("PRIVATE" not in value for value in key["data"].values())
