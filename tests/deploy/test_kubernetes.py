"""deploy/kubernetes: the kustomize base and the production overlay, as rendered.

Every rendered object of a built-in kind is validated against the Kubernetes
OpenAPI schemas of a stated version (kubernetes-validate, strict: an unknown
field fails). The custom resources (CloudNativePG's Cluster, ScheduledBackup
and ObjectStore; the Prometheus Operator's ServiceMonitor, PodMonitor and
PrometheusRule) have no schema in any package reachable here, so the fields
this deployment relies on are checked one by one instead, and any other field
fails until someone has looked it up (deploy/README.md says what that leaves).
"""

from __future__ import annotations

import copy
import ipaddress
import posixpath
import re
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    KUSTOMIZATIONS,
    Obj,
    component,
    cpis_variables,
    find,
    image_env,
    one,
    render,
    selects,
    workloads,
)

# The oldest Kubernetes these manifests are written for (deploy/README.md), and
# the newest whose schemas kubernetes-validate had when they were written.
KUBERNETES_VERSIONS = ("1.31", "1.37")

# Kinds whose schema is a custom resource definition, not Kubernetes's own.
CUSTOM_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("barmancloud.cnpg.io/v1", "ObjectStore"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

# Secrets the manifests read but do not make: the operator creates the first three
# (deploy/README.md); the CloudNativePG operator makes the Cluster's.
OPERATOR_SECRETS = {"cpis-keys", "cpis-key-files", "cpis-db-backup-s3"}

WRITABLE_MOUNTS = {"/tmp", "/var/lib/cpis"}

ALL = pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))


def _cluster(objs: list[Obj]) -> Obj:
    (cluster,) = find(objs, "Cluster")
    return cluster


def _cnpg_secrets(objs: list[Obj]) -> set[str]:
    name = _cluster(objs)["metadata"]["name"]
    return {f"{name}-app", f"{name}-ca"}


# --- rendering and schemas ---------------------------------------------------------


@ALL
def test_renders_the_whole_deployment(name: str) -> None:
    """kubectl's kustomize renders each kustomization into the full set of objects:
    serve (Deployment, Service, HPA, PDB), worker, the migration Job, the network
    policies, the database and its backups, and the monitoring objects."""
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(name)}
    for expected in [
        ("Deployment", "cpis-serve"),
        ("Service", "cpis-serve"),
        ("HorizontalPodAutoscaler", "cpis-serve"),
        ("PodDisruptionBudget", "cpis-serve"),
        ("Deployment", "cpis-worker"),
        ("PodDisruptionBudget", "cpis-worker"),
        ("Job", "cpis-migrate"),
        ("ServiceAccount", "cpis"),
        ("NetworkPolicy", "cpis-default-deny"),
        ("Cluster", "cpis-db"),
        ("ScheduledBackup", "cpis-db-daily"),
        ("ObjectStore", "cpis-db-backups"),
        ("ServiceMonitor", "cpis-serve"),
        ("PodMonitor", "cpis-db"),
        ("PodMonitor", "cpis-worker"),
        ("PrometheusRule", "cpis"),
        ("ConfigMap", "cpis-grafana-dashboard"),
    ]:
        assert expected in kinds, expected


@ALL
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(name: str, version: str) -> None:
    """Each object of a built-in kind passes strict schema validation for the
    stated Kubernetes version; the only objects without a schema are the custom
    resources this deployment knows it uses (checked field by field below)."""
    unchecked = set()
    for obj in render(name):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add((obj["apiVersion"], obj["kind"]))
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert unchecked <= CUSTOM_KINDS, unchecked - CUSTOM_KINDS


def test_the_schema_check_is_strict() -> None:
    """A misspelt field fails validation: the check above is not vacuous."""
    serve = copy.deepcopy(one(render("production"), "Deployment", "cpis-serve"))
    container = serve["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(serve, KUBERNETES_VERSIONS[0], strict=True)


# --- the pods ----------------------------------------------------------------------


@ALL
def test_pods_are_locked_down(name: str) -> None:
    """Every CP-IS pod runs as a non-root user with a read-only root filesystem,
    no capabilities, no privilege escalation, RuntimeDefault seccomp and no
    service account token; the only writable places are emptyDirs at /tmp and the
    data directory; the secret files are readable by its group (fsGroup), since
    the kubelet writes them as root."""
    objs = render(name)
    assert one(objs, "ServiceAccount", "cpis")["automountServiceAccountToken"] is False
    for obj, template in workloads(objs):
        spec = template["spec"]
        where = obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["serviceAccountName"] == "cpis", where
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, where
        assert pod["runAsUser"] != 0 and pod["runAsGroup"] != 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in volumes.values():
            assert set(volume) <= {"name", "emptyDir", "secret"}, (where, volume)
            if "secret" in volume:
                assert volume["secret"]["defaultMode"] & 0o040, (where, volume["name"])
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            for mount in container["volumeMounts"]:
                volume = volumes[mount["name"]]
                if "secret" in volume:
                    assert mount.get("readOnly") is True, (where, mount)
                else:
                    assert "emptyDir" in volume and "sizeLimit" in volume["emptyDir"]
                    assert mount["mountPath"] in WRITABLE_MOUNTS, (where, mount)
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where


def test_image_user_matches_the_pods() -> None:
    """The Dockerfile runs as the numeric user the pods (and compose) ask for, so
    runAsNonRoot can be checked against the image and the emptyDirs are its own."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    for _obj, template in workloads(render("production")):
        assert template["spec"]["securityContext"]["runAsUser"] == 10001
        assert template["spec"]["securityContext"]["fsGroup"] == 10001


@ALL
def test_each_workload_runs_its_command(name: str) -> None:
    """serve runs `cpis serve` without the background workers (the worker
    Deployment delivers), worker runs `cpis worker`, the Job runs `cpis migrate`."""
    objs = render(name)
    commands = {}
    for obj, template in workloads(objs):
        (container,) = template["spec"]["containers"]
        assert "command" not in container  # the image's entrypoint is `cpis`
        commands[obj["metadata"]["name"]] = container["args"]
    assert commands == {
        "cpis-serve": ["serve"],
        "cpis-worker": ["worker"],
        "cpis-migrate": ["migrate"],
    }
    assert cpis_variables(objs, component(objs, "serve"))["CPIS_WORKERS_IN_SERVE"] == "false"
    assert "CPIS_WORKERS_IN_SERVE" not in cpis_variables(objs, component(objs, "worker"))
    job = one(objs, "Job", "cpis-migrate")["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert job["ttlSecondsAfterFinished"] > 0


@ALL
@pytest.mark.parametrize("role", ["serve", "worker"])
def test_serve_and_worker_probes_and_port(name: str, role: str) -> None:
    """serve and worker are probed where they answer at the pod's root: readiness on
    /readyz (503 while the database is unusable), liveness and start-up on
    /healthz (the worker's is 503 once its dispatcher stops), on the port the image
    listens on (CPIS_PORT)."""
    objs = render(name)
    (container,) = component(objs, role)["spec"]["containers"]
    (port,) = container["ports"]
    assert port == {
        "name": "http",
        "containerPort": int(image_env()["CPIS_PORT"]),
        "protocol": "TCP",
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


@ALL
def test_migrate_listens_on_nothing(name: str) -> None:
    """The migration Job has no port and no probe: it runs to completion."""
    (container,) = component(render(name), "migrate")["spec"]["containers"]
    assert "ports" not in container and "livenessProbe" not in container


# --- configuration and secrets -----------------------------------------------------


def _documented_settings() -> set[str]:
    """The CPIS_* variables the README's Configuration table names."""
    readme = (DEPLOY.parent / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(CPIS_[A-Z0-9_]+)`", table))


def _read_settings() -> set[str]:
    """The CPIS_* variables cpis/settings.py reads."""
    source = (DEPLOY.parent / "cpis" / "settings.py").read_text()
    return set(re.findall(r"\"(CPIS_[A-Z0-9_]+)\"", source))


@ALL
def test_every_variable_is_a_real_setting(name: str) -> None:
    """Every CPIS_* variable given to a pod (directly or by ConfigMap) is one the
    service reads and the README documents: a misspelt one would be ignored."""
    objs = render(name)
    known = _documented_settings() & _read_settings()
    for _obj, template in workloads(objs):
        given = set(cpis_variables(objs, template))
        assert given <= known, given - known


@ALL
def test_keys_and_database_come_from_secrets(name: str) -> None:
    """Each process gets the database URL from CloudNativePG's app Secret (with
    the server's certificate checked against the cluster's CA), the data and
    hash keys from the cpis-keys Secret, and the signing and audit keys as files
    from cpis-key-files, at the paths CPIS_KEYS_SIGNING and CPIS_KEYS_AUDIT name."""
    objs = render(name)
    cluster = _cluster(objs)["metadata"]["name"]
    for obj, template in workloads(objs):
        where = obj["metadata"]["name"]
        (container,) = template["spec"]["containers"]
        env = container["env"]
        names = [v["name"] for v in env]
        by_name = {v["name"]: v for v in env}
        uri = by_name["CNPG_APP_URI"]["valueFrom"]["secretKeyRef"]
        assert uri == {"name": f"{cluster}-app", "key": "uri"}
        url = by_name["CPIS_DATABASE_URL"]["value"]
        # $(VAR) is expanded only from variables defined before it.
        assert url.startswith("$(CNPG_APP_URI)?"), where
        assert names.index("CNPG_APP_URI") < names.index("CPIS_DATABASE_URL")
        query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
        assert query["sslmode"] == "verify-full"
        for key in ("CPIS_KEYS_DATA", "CPIS_KEYS_HASH"):
            assert by_name[key]["valueFrom"]["secretKeyRef"] == {"name": "cpis-keys", "key": key}
        mounted = _mounted_secret_files(template, container)
        assert mounted[query["sslrootcert"]] == (f"{cluster}-ca", "ca.crt"), where
        assert mounted[by_name["CPIS_KEYS_SIGNING"]["value"]] == ("cpis-key-files", "signing.pem")
        assert mounted[by_name["CPIS_KEYS_AUDIT"]["value"]] == ("cpis-key-files", "audit.pem")


def _mounted_secret_files(template: Obj, container: Obj) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret, key), for secret volumes with items."""
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    out = {}
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        for item in secret["items"]:
            path = posixpath.join(mount["mountPath"], item["path"])
            out[path] = (secret["secretName"], item["key"])
    return out


@ALL
def test_every_reference_resolves(name: str) -> None:
    """Each ConfigMap a pod reads is rendered; each Secret is rendered, made by
    CloudNativePG for the Cluster, or one the operator creates (and the README
    says how)."""
    objs = render(name)
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objs}
    external = OPERATOR_SECRETS | _cnpg_secrets(objs)
    used = set()
    for _obj, template in workloads(objs):
        spec = template["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in rendered
                else:
                    assert source["secretRef"] == {"name": "cpis-integrations", "optional": True}
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    used.add(ref["name"])
        used |= {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    store = one(objs, "ObjectStore", "cpis-db-backups")["spec"]["configuration"]
    used |= {ref["name"] for ref in store["s3Credentials"].values()}
    assert used <= external | {n for k, n in rendered if k == "Secret"}, used - external
    readme = (DEPLOY / "README.md").read_text()
    for secret in OPERATOR_SECRETS:
        assert f"create secret generic {secret}" in readme, secret


@ALL
def test_selectors_find_their_pods(name: str) -> None:
    """The Service, PodDisruptionBudgets, autoscaler, ServiceMonitor and PodMonitors
    point at what exists: serve's pods, its Deployment, the Service's named port,
    the worker's pods and their named port."""
    objs = render(name)
    serve = component(objs, "serve")["metadata"]["labels"]
    worker = component(objs, "worker")["metadata"]["labels"]
    service = one(objs, "Service", "cpis-serve")
    assert selects({"matchLabels": service["spec"]["selector"]}, serve)
    assert not selects({"matchLabels": service["spec"]["selector"]}, worker)
    assert selects(one(objs, "PodDisruptionBudget", "cpis-serve")["spec"]["selector"], serve)
    assert selects(one(objs, "PodDisruptionBudget", "cpis-worker")["spec"]["selector"], worker)
    for deployment in find(objs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selects(deployment["spec"]["selector"], labels)
    hpa = one(objs, "HorizontalPodAutoscaler", "cpis-serve")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "cpis-serve",
    }
    # The autoscaler owns serve's replica count: a fixed one would fight it on apply.
    assert "replicas" not in one(objs, "Deployment", "cpis-serve")["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    monitor = one(objs, "ServiceMonitor", "cpis-serve")["spec"]
    assert set(monitor) <= {"selector", "endpoints", "namespaceSelector"}
    assert selects(monitor["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["endpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    worker_monitor = one(objs, "PodMonitor", "cpis-worker")["spec"]
    assert selects(worker_monitor["selector"], worker)
    assert not selects(worker_monitor["selector"], serve)  # serve's is the ServiceMonitor
    (worker_endpoint,) = worker_monitor["podMetricsEndpoints"]
    assert set(worker_endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    (worker_container,) = component(objs, "worker")["spec"]["containers"]
    assert worker_endpoint["port"] in {p["name"] for p in worker_container["ports"]}
    assert worker_endpoint["path"] == "/metrics"
    db_monitor = one(objs, "PodMonitor", "cpis-db")["spec"]
    assert db_monitor["selector"] == {"matchLabels": {"cnpg.io/cluster": "cpis-db"}}
    assert db_monitor["podMetricsEndpoints"] == [{"port": "metrics"}]


def test_production_pins_what_it_runs() -> None:
    """The production overlay names an exact image tag or digest, a public URL
    under https, at least three serve replicas, and its own namespace, which
    enforces the restricted Pod Security Standard."""
    objs = render("production")
    for _obj, template in workloads(objs):
        (container,) = template["spec"]["containers"]
        image = container["image"]
        assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image.split("/")[-1]), image
        assert not image.endswith(":latest")
    variables = cpis_variables(objs, component(objs, "serve"))
    assert str(variables["CPIS_PUBLIC_BASE_URL"]).startswith("https://")
    assert one(objs, "HorizontalPodAutoscaler", "cpis-serve")["spec"]["minReplicas"] >= 3
    namespace = one(objs, "Namespace", "cpis")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {"cpis"}


# --- the network policies ----------------------------------------------------------


def _ip(addr: str) -> dict[str, Any]:
    return {"ip": ipaddress.ip_address(addr)}


def _pod(labels: dict[str, str], namespace: str | None = None) -> dict[str, Any]:
    return {"labels": labels, "namespace": namespace}


def _peer_matches(peer: Obj, target: dict[str, Any], policy_ns: str | None) -> bool:
    if "ipBlock" in peer:
        if "ip" not in target:
            return False
        block = peer["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        if target["ip"].version != net.version or target["ip"] not in net:
            return False
        return not any(target["ip"] in ipaddress.ip_network(e) for e in block.get("except", []))
    if "labels" not in target:
        return False
    namespace = target["namespace"] or policy_ns
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": namespace or ""}
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif namespace != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), target["labels"])


def _port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p or p["port"] <= port <= p.get("endPort", p["port"]):
            return True
    return False


def _allowed(
    objs: list[Obj],
    pod: dict[str, str],
    direction: str,
    target: dict[str, Any],
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether the NetworkPolicies (which add up) let ``pod`` talk to or hear from
    ``target`` on ``port``: a small evaluator of the parts of the API used here."""
    policies = [
        p
        for p in find(objs, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], pod) and direction in p["spec"]["policyTypes"]
    ]
    if not policies:
        return True
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in policies:
        ns = policy["metadata"].get("namespace")
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if peers is not None and not any(_peer_matches(p, target, ns) for p in peers):
                continue
            if _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


@ALL
def test_network_policies(name: str) -> None:
    """serve and worker reach DNS, the database and public addresses (MESH, PDS,
    CIS2 on 443; rest-hooks on any port), never private, link-local (cloud
    metadata) or loopback ones; migrate reaches only DNS and the database; only
    the ingress controller and Prometheus reach serve, only Prometheus reaches
    worker (/metrics), nothing reaches migrate; the database takes connections
    from CP-IS, not from other pods."""
    objs = render(name)
    serve, worker, migrate = (
        component(objs, c)["metadata"]["labels"] for c in ("serve", "worker", "migrate")
    )
    db = _pod({"cnpg.io/cluster": _cluster(objs)["metadata"]["name"]})
    dns = _pod({"k8s-app": "kube-dns"}, "kube-system")
    ingress = _pod({"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx")
    prometheus = _pod({"app.kubernetes.io/name": "prometheus"}, "monitoring")
    stranger = _pod({"app": "something-else"})
    for pod in (serve, worker, migrate):
        assert _allowed(objs, pod, "Egress", dns, 53, "UDP")
        assert _allowed(objs, pod, "Egress", db, 5432)
        assert not _allowed(objs, pod, "Egress", db, 8000)
        assert not _allowed(objs, pod, "Egress", stranger, 8080)
        for private in (
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "127.0.0.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ):
            assert not _allowed(objs, pod, "Egress", _ip(private), 443), (pod, private)
    for pod in (serve, worker):
        assert _allowed(objs, pod, "Egress", _ip("198.51.100.7"), 443)
        assert _allowed(objs, pod, "Egress", _ip("198.51.100.7"), 8443)
        assert _allowed(objs, pod, "Egress", _ip("2001:db8::7"), 443)
    assert not _allowed(objs, migrate, "Egress", _ip("198.51.100.7"), 443)
    assert _allowed(objs, serve, "Ingress", ingress, 8080)
    assert _allowed(objs, serve, "Ingress", prometheus, 8080)
    assert not _allowed(objs, serve, "Ingress", stranger, 8080)
    assert not _allowed(objs, serve, "Ingress", ingress, 5432)
    assert _allowed(objs, worker, "Ingress", prometheus, 8080)
    assert not _allowed(objs, worker, "Ingress", prometheus, 5432)
    assert not _allowed(objs, worker, "Ingress", stranger, 8080)
    assert not _allowed(objs, migrate, "Ingress", prometheus, 8080)
    for pod in (worker, migrate):
        assert not _allowed(objs, pod, "Ingress", ingress, 8080)
    db_labels = db["labels"]
    for pod in (serve, worker, migrate):
        assert _allowed(objs, db_labels, "Ingress", _pod(pod), 5432)
    assert _allowed(objs, db_labels, "Ingress", db, 5432)  # replication
    assert _allowed(objs, db_labels, "Ingress", _pod({"app": "cnpg"}, "cnpg-system"), 8000)
    assert _allowed(objs, db_labels, "Ingress", prometheus, 9187)
    assert not _allowed(objs, db_labels, "Ingress", stranger, 5432)


# --- the custom resources, field by field -------------------------------------------

# The fields this deployment sets on CloudNativePG's Cluster (its API reference,
# cloudnative-pg.v1 ClusterSpec): a field outside this list fails until someone
# has checked it there, since no CRD schema is at hand to catch a misspelling.
CLUSTER_FIELDS = {
    "instances",
    "imageName",
    "primaryUpdateStrategy",
    "bootstrap",
    "enableSuperuserAccess",
    "postgresql",
    "storage",
    "walStorage",
    "affinity",
    "resources",
    "plugins",
}


@ALL
def test_cloudnativepg_cluster(name: str) -> None:
    """The Cluster has three instances on different nodes, commits wait for a
    standby (ANY 1, dataDurability required) and failover promotes only a standby
    proven to hold them (failoverQuorum: CloudNativePG 1.28+), the application
    role owns the database, and the WAL archive and base backups go to an object
    store through the Barman Cloud plugin, daily."""
    objs = render(name)
    cluster = _cluster(objs)
    spec = cluster["spec"]
    assert set(spec) <= CLUSTER_FIELDS, set(spec) - CLUSTER_FIELDS
    assert spec["instances"] == 3
    sync = spec["postgresql"]["synchronous"]
    assert set(sync) <= {"method", "number", "dataDurability", "failoverQuorum"}
    assert sync["method"] in ("any", "first") and 1 <= sync["number"] < spec["instances"]
    assert sync["dataDurability"] == "required"
    assert sync["failoverQuorum"] is True
    assert set(spec["postgresql"]) <= {"synchronous", "parameters"}
    assert all(isinstance(v, str) for v in spec["postgresql"]["parameters"].values())
    assert spec["affinity"] == {
        "enablePodAntiAffinity": True,
        "podAntiAffinityType": "required",
        "topologyKey": "kubernetes.io/hostname",
    }
    initdb = spec["bootstrap"]["initdb"]
    assert set(spec["bootstrap"]) == {"initdb"} and set(initdb) == {"database", "owner"}
    assert spec["enableSuperuserAccess"] is False
    assert set(spec["storage"]) == {"size"} and set(spec["walStorage"]) == {"size"}
    major = re.search(r":(\d+)", spec["imageName"].rsplit("/", 1)[-1])
    assert major and int(major.group(1)) >= 14, spec["imageName"]  # README: PostgreSQL 14+
    (plugin,) = spec["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
    assert plugin["isWALArchiver"] is True
    store = one(objs, "ObjectStore", plugin["parameters"]["barmanObjectName"])
    assert set(store["spec"]) == {"retentionPolicy", "configuration"}
    assert re.fullmatch(r"[1-9][0-9]*[dwm]", store["spec"]["retentionPolicy"])
    config = store["spec"]["configuration"]
    assert set(config) == {"destinationPath", "s3Credentials", "wal", "data"}
    assert config["destinationPath"].startswith("s3://")
    assert set(config["s3Credentials"]) == {"accessKeyId", "secretAccessKey"}
    for ref in config["s3Credentials"].values():
        assert set(ref) == {"name", "key"}
    (backup,) = find(objs, "ScheduledBackup")
    assert backup["spec"]["cluster"] == {"name": cluster["metadata"]["name"]}
    assert backup["spec"]["method"] == "plugin"
    assert backup["spec"]["pluginConfiguration"] == {"name": plugin["name"]}
    assert len(backup["spec"]["schedule"].split()) == 6  # seconds first
    assert set(backup["spec"]) == {
        "schedule",
        "backupOwnerReference",
        "cluster",
        "method",
        "pluginConfiguration",
    }


def test_readme_names_what_was_not_validated() -> None:
    """deploy/README.md says which objects no schema checked here."""
    readme = (DEPLOY / "README.md").read_text()
    for _api, kind in CUSTOM_KINDS:
        assert f"`{kind}`" in readme, kind
    assert "kubectl kustomize deploy/kubernetes/overlays/production" in readme
    assert "tests/deploy/test_kubernetes.py" in readme
