"""deploy/compose.yaml and the key files, kept in step with deploy/kubernetes.

No container engine is at hand, so compose.yaml is never built or started here:
these tests hold it to the same processes, variables, key files and container
restrictions as the Kubernetes manifests, and check that deploy/make-secrets
writes keys the service accepts, in the layout both read.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cpis.adapters.keys import load_keys
from cpis.settings import Settings
from tests.deploy.manifests import (
    DEPLOY,
    REPO,
    Obj,
    component,
    compose,
    cpis_variables,
    image_env,
    render,
    run_kubectl,
)

ROLES = {"serve": ["cpis-1", "cpis-2"], "worker": ["worker"], "migrate": ["migrate"]}
SECRETS = DEPLOY / "secrets"


def _env_file_names() -> set[str]:
    """The variables deploy/secrets/keys.env holds (what make-secrets writes)."""
    script = (DEPLOY / "make-secrets").read_text()
    return set(re.findall(r'echo "(CPIS_[A-Z_]+)=', script))


def _compose_variables(service: dict[str, Any]) -> set[str]:
    names = {k for k in service["environment"] if k.startswith("CPIS_")}
    env_files = service["env_file"]
    assert env_files == [
        "./secrets/keys.env",
        {"path": "./secrets/integrations.env", "required": False},
    ]
    # integrations.env is optional, as the cpis-integrations Secret is: the
    # operator's, with whatever credentials the service has.
    return names | _env_file_names()


def test_compose_runs_the_same_processes() -> None:
    """compose runs PostgreSQL, the migration once, two serve replicas without
    background workers, and a worker: the Kubernetes deployment in miniature."""
    services = compose()["services"]
    assert set(services) == {"db", *(s for names in ROLES.values() for s in names)}
    for role, names in ROLES.items():
        for name in names:
            assert services[name]["command"] == [role], name
    for name in ROLES["serve"]:
        assert services[name]["environment"]["CPIS_WORKERS_IN_SERVE"] == "false"
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    # The worker answers the image's health check (/healthz on 8080), unpublished.
    assert "healthcheck" not in services["worker"] and "ports" not in services["worker"]
    assert services["migrate"]["healthcheck"] == {"disable": True}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_compose_gives_the_same_variables(role: str) -> None:
    """Each compose service gets exactly the CPIS_* variables the same process
    gets in Kubernetes (the base, before an overlay adds its own), counting the
    image's ENV for both."""
    objs = render("base")
    kubernetes = set(cpis_variables(objs, component(objs, role))) | set(image_env())
    for name in ROLES[role]:
        service = compose()["services"][name]
        assert _compose_variables(service) | set(image_env()) == kubernetes, name


def test_same_secrets_layout() -> None:
    """The keys are laid out alike: keys.env's variables are the cpis-keys
    Secret's keys, and signing.pem and audit.pem are mounted at the same paths
    as the cpis-key-files Secret's items in the pods."""
    objs = render("base")
    (container,) = component(objs, "serve")["spec"]["containers"]
    secret_env = {
        v["name"]: v["valueFrom"]["secretKeyRef"]
        for v in container["env"]
        if v.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "cpis-keys"
    }
    assert {ref["key"] for ref in secret_env.values()} == _env_file_names() == set(secret_env)
    doc = compose()
    files = {name: spec["file"] for name, spec in doc["secrets"].items()}
    for name in ("cpis-1", "worker", "migrate"):
        service = doc["services"][name]
        mounted = {s["target"]: files[s["source"]] for s in service["secrets"]}
        assert mounted == {
            service["environment"]["CPIS_KEYS_SIGNING"]: "./secrets/signing.pem",
            service["environment"]["CPIS_KEYS_AUDIT"]: "./secrets/audit.pem",
        }
        for variable in ("CPIS_KEYS_SIGNING", "CPIS_KEYS_AUDIT"):
            assert service["environment"][variable] == next(
                v["value"] for v in container["env"] if v["name"] == variable
            )


def test_compose_containers_are_locked_down() -> None:
    """As in the pods: user 10001, read-only root, no capabilities, no privilege
    escalation, writable tmpfs only at /tmp (and the data directory for serve)."""
    services = compose()["services"]
    for names in ROLES.values():
        for name in names:
            service = services[name]
            assert service["user"] == "10001:10001"
            assert service["read_only"] is True
            assert service["cap_drop"] == ["ALL"]
            assert service["security_opt"] == ["no-new-privileges:true"]
            expected = ["/tmp", "/var/lib/cpis"] if name in ROLES["serve"] else ["/tmp"]
            assert service["tmpfs"] == expected, name


def test_compose_says_it_was_not_built_here() -> None:
    """The compose file and deploy/README.md say plainly that no container was
    built or run in this project."""
    assert "NOT BUILT OR RUN HERE" in (DEPLOY / "compose.yaml").read_text()
    assert "not been built or run" in (DEPLOY / "README.md").read_text()


def test_secrets_directory_is_ignored_by_git() -> None:
    """Keys written to deploy/secrets/ can never be committed by accident."""
    for name in ("keys.env", "signing.pem", "audit.pem"):
        done = subprocess.run(
            ["git", "check-ignore", "-q", f"deploy/secrets/{name}"], cwd=REPO, check=False
        )
        assert done.returncode == 0, name


@pytest.fixture(scope="module")
def made_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("deploy/make-secrets needs openssl")
    out = tmp_path_factory.mktemp("deploy") / "secrets"
    subprocess.run([str(DEPLOY / "make-secrets"), str(out)], check=True, capture_output=True)
    return out


def test_make_secrets_writes_keys_the_service_accepts(made_secrets: Path) -> None:
    """deploy/make-secrets writes keys.env, signing.pem and audit.pem that the
    service loads as its keys, and refuses to overwrite them."""
    env = dict(line.split("=", 1) for line in (made_secrets / "keys.env").read_text().splitlines())
    assert set(env) == {"CPIS_KEYS_DATA", "CPIS_KEYS_HASH"}
    settings = Settings.from_env(
        env
        | {
            "CPIS_KEYS_SIGNING": str(made_secrets / "signing.pem"),
            "CPIS_KEYS_AUDIT": str(made_secrets / "audit.pem"),
            "CPIS_DATA_DIR": str(made_secrets / "no-data-dir"),
        }
    )
    keys = load_keys(settings, log=_NoLog(), create=False)
    assert keys.active_data_kid == "k1"
    assert (made_secrets / "keys.env").stat().st_mode & 0o077 == 0
    again = subprocess.run(
        [str(DEPLOY / "make-secrets"), str(made_secrets)], capture_output=True, text=True
    )
    assert again.returncode != 0 and "not replacing" in again.stderr


class _NoLog:
    def warning(self, event: str, **fields: object) -> None:
        raise AssertionError(f"unexpected warning loading the keys: {event}")


def _readme_commands() -> list[list[str]]:
    """The `kubectl create secret generic …` commands deploy/README.md gives."""
    readme = (DEPLOY / "README.md").read_text()
    commands = re.findall(r"^(kubectl -n cpis create secret generic [^\n]+)$", readme, re.M)
    return [c.split() for c in commands]


def test_readme_commands_make_the_secrets_the_pods_read(made_secrets: Path) -> None:
    """The README's commands, run client-side on make-secrets' files, make valid
    Secrets holding every key the pods name (cpis-keys and cpis-key-files)."""
    made: dict[str, Obj] = {}
    for argv in _readme_commands():
        assert argv[:2] == ["kubectl", "-n"]
        if argv[6] in ("cpis-db-backup-s3", "cpis-integrations"):
            continue  # credentials of yours, not keys make-secrets writes
        args = [a.replace("deploy/secrets/", "") for a in argv[1:]]
        out = run_kubectl(*args, "--dry-run=client", "-o", "yaml", cwd=made_secrets)
        secret = yaml.safe_load(out)
        kubernetes_validate.validate(secret, "1.31", strict=True)
        made[secret["metadata"]["name"]] = secret
    objs = render("production")
    for role in ROLES:
        template = component(objs, role)
        (container,) = template["spec"]["containers"]
        for var in container["env"]:
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] in made:
                assert ref["key"] in made[ref["name"]]["data"], ref
        for volume in template["spec"]["volumes"]:
            secret = volume.get("secret")
            if secret and secret["secretName"] in made:
                for item in secret["items"]:
                    assert item["key"] in made[secret["secretName"]]["data"], item
    assert set(made) == {"cpis-keys", "cpis-key-files"}
