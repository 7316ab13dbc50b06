"""The Kubernetes CronJob manifest: valid against the Kubernetes schemas, and what it promises.

kubernetes-validate bundles the schemas of every Kubernetes release, so this needs no
cluster and no network.
"""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from support import ROOT

MANIFEST = ROOT / "deploy" / "kubernetes" / "cronjob.yaml"
# The oldest release still supported upstream when this was written, and the newest the
# package knows: the manifest must hold for both.
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


def documents() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_manifest_validates_strictly(version):
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("path, value", [
    (("spec", "jobTemplate", "spec", "paralellism"), 3),  # a misspelt field (strict)
    (("spec", "jobTemplate", "spec", "parallelism"), "three"),  # a wrong type
    (("spec", "startingDeadlineSeconds"), "1h"),
])
def test_a_mistake_is_caught(path, value):
    (cronjob,) = documents()
    node = cronjob
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(cronjob, VERSIONS[-1], strict=True)


def test_the_cronjob_runs_the_service_as_the_issue_asks():
    (cronjob,) = documents()
    assert cronjob["kind"] == "CronJob"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["parallelism"] > 1 and "completions" not in job  # a work queue of pods
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "/app/ingest.py"]
    env = {e["name"]: e for e in container["env"]}
    for secret in ("DB_PASSWORD", "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"):
        assert "value" not in env[secret]
        assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == "wearables-ingester"
    assert int(env["WORKERS"]["value"]) >= 1
    # every variable it sets is one the service reads (config.py), or HOME
    from ingester.config import VARIABLES

    assert set(env) - set(VARIABLES) == {"HOME"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    state_dir = env["STATE_FILE"]["value"].rsplit("/", 1)[0]
    assert state_dir in mounts
