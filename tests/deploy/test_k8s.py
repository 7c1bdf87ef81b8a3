"""deploy/k8s: every manifest parses, and the fields that make the deployment work agree with
each other and with the hpo command line (no cluster here: what kubectl would refuse or what
would fail at run time, checked from the files)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_helpers import HPO
from sqlalchemy.engine import make_url

from hpo_vidpred.store import normalize_url

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
API = {"Job": "batch/v1", "StatefulSet": "apps/v1", "Deployment": "apps/v1", "Service": "v1",
       "Secret": "v1"}


def _documents() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _one(kind: str) -> dict:
    (doc,) = [d for d in _documents() if d["kind"] == kind]
    return doc


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container["env"]}


def _flags_in_help(*command: str) -> set[str]:
    text = subprocess.run([*HPO, *command, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
                          timeout=120).stdout
    return set(re.findall(r"--[a-z][a-z-]*", text))


def test_every_manifest_parses_with_its_api_version() -> None:
    docs = _documents()
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Job", "Secret", "Service",
                                               "Service", "StatefulSet"]
    for doc in docs:
        assert doc["apiVersion"] == API[doc["kind"]], doc["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


@pytest.fixture(scope="module")
def run_flags() -> set[str]:
    return _flags_in_help("run")


def test_the_job_is_indexed_one_gpu_per_pod_with_the_store_from_the_secret(run_flags) -> None:
    job, secret = _one("Job"), _one("Secret")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] >= spec["parallelism"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    container = _container(job)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    ref = _env(container)["HPO_STORAGE"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    command = container["command"]
    assert command[:2] == ["hpo", "run"]
    assert "--storage" not in command  # the URL and its password stay in the Secret
    flags = [arg for arg in command if arg.startswith("--")]
    assert {"--arch", "--data", "--trials"} <= set(flags)
    assert set(flags) <= run_flags, set(flags) - run_flags
    assert int(command[command.index("--trials") + 1]) > 0
    volumes = {v["name"] for v in pod["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes


def test_postgres_statefulset_service_claims_and_the_secret_agree() -> None:
    sts, secret = _one("StatefulSet"), _one("Secret")
    services = {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "Service"}
    service = services[sts["spec"]["serviceName"]]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    container = _container(sts)
    assert claim["metadata"]["name"] in {m["name"] for m in container["volumeMounts"]}
    env = _env(container)
    password = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == secret["metadata"]["name"]
    # the URL the workers use reaches this server as this user, in this database
    url = make_url(normalize_url(secret["stringData"]["HPO_STORAGE"]))
    assert url.drivername == "postgresql+psycopg"
    assert url.host == service["metadata"]["name"]
    assert url.port == service["spec"]["ports"][0]["port"] == 5432
    assert url.username == env["POSTGRES_USER"]["value"]
    assert url.database == env["POSTGRES_DB"]["value"]
    assert url.password == secret["stringData"][password["key"]]


def test_the_store_proxy_serves_on_its_service_port_with_real_flags() -> None:
    deployment, secret = _one("Deployment"), _one("Secret")
    container = _container(deployment)
    command = container["command"]
    assert command[:3] == ["hpo", "store", "serve"]
    flags = {arg for arg in command if arg.startswith("--")}
    assert flags <= _flags_in_help("store", "serve")
    assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from the worker pods
    port = int(command[command.index("--port") + 1])
    (service,) = [d for d in _documents() if d["kind"] == "Service"
                  and d["metadata"]["name"] == "hpo-store"]
    assert service["spec"]["ports"][0]["targetPort"] == port
    assert service["spec"]["selector"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert container["ports"][0]["containerPort"] == port
    ref = _env(container)["HPO_STORAGE"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    # what the Job's comment says to put in HPO_STORAGE for the proxy is a store URL hpo takes
    assert f"grpc://hpo-store:{port}" in (K8S / "hpo-job.yaml").read_text()
    assert normalize_url(f"grpc://hpo-store:{port}") == f"grpc://hpo-store:{port}"
