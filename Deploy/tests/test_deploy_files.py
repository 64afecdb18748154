"""The deployment files (Dockerfile, Deploy/compose.yaml, Deploy/nginx/, Deploy/kubernetes/ and its TLS overlay)
parse and agree with the server: its port and drain timeout (Config/mimood.toml), its probe routes
(openapi.yaml), its setting names, what its TLS needs."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "Deploy"
SETTINGS = tomllib.loads((ROOT / "Config/mimood.toml").read_text())
PORT = SETTINGS["port"]
DRAIN_SECONDS = SETTINGS["drain_timeout_seconds"]
HEALTHCHECK_SCRIPT = "scripts/container/healthcheck"


def load(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kubernetes(kind):
    [doc] = [d for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in load(p) if d["kind"] == kind]
    return doc


def dockerfile():
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def instruction(name, stage=-1):
    """The arguments of every `name` instruction in a build stage (default: the last, the image)."""
    stages, current = [], None
    for word, arguments in dockerfile():
        if word == "FROM":
            current = []
            stages.append(current)
        elif current is not None:
            current.append((word, arguments))
    return [arguments for word, arguments in stages[stage] if word == name]


def seconds(duration):
    """A compose duration such as '1m15s' or '75s'."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def container():
    [c] = kubernetes("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def probe_port(probe):
    """A probe's port, a named container port resolved."""
    port = probe["httpGet"]["port"]
    return port if isinstance(port, int) else {p["name"]: p["containerPort"] for p in container()["ports"]}[port]


# --- Everything parses ---

@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path):
    docs = load(path)
    assert docs, f"{path} is empty"
    if "kubernetes" in path.parts:
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys()


def test_probe_routes_are_in_the_contract():
    paths = yaml.safe_load((ROOT / "openapi.yaml").read_text())["paths"]
    assert "/healthz" in paths and "/readyz" in paths


# --- The image ---

def test_image_listens_on_the_server_port():
    assert instruction("EXPOSE") == [str(PORT)]
    env = " ".join(instruction("ENV"))
    assert f"MIMOOD_PORT={PORT}" in env and "MIMOOD_HOST=0.0.0.0" in env


def test_image_healthcheck_probes_healthz_on_the_server_port():
    [healthcheck] = instruction("HEALTHCHECK")
    assert '["/app/bin/healthcheck"]' in healthcheck
    # scripts/container/build installs the script as bin/healthcheck; scripts/test runs it against the staged server.
    assert f"install -m 755 {HEALTHCHECK_SCRIPT} \"$staging/bin/healthcheck\"" in (ROOT / "scripts/container/build").read_text()
    script = (ROOT / HEALTHCHECK_SCRIPT).read_text()
    assert "GET /healthz " in script and "${MIMOOD_PORT:-%d}" % PORT in script


def test_image_stops_by_sigterm_to_the_server_as_pid_1():
    assert instruction("STOPSIGNAL") == ["SIGTERM"]
    [entrypoint] = instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["/app/bin/mimood", "serve"]   # exec form: no shell in between


def test_image_runs_as_a_user_other_than_root():
    [user] = instruction("USER")
    assert user not in ("root", "0")


def test_image_stages_are_built_by_the_scripts_ci_runs():
    run = " ".join(instruction("RUN", stage=0)) + " " + " ".join(instruction("RUN"))
    test_script = (ROOT / "scripts/test").read_text()
    for script in ("install-build-packages", "build", "install-runtime-packages"):
        assert f"scripts/container/{script}" in run
        assert f"scripts/container/{script}" in test_script


# --- Kubernetes ---

def test_deployment_probes_the_server_routes_and_port():
    c = container()
    assert [p["containerPort"] for p in c["ports"]] == [PORT]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert probe_port(c[probe]) == PORT


def test_deployment_grace_period_covers_pre_stop_and_drain():
    spec = kubernetes("Deployment")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = float(kubernetes("ConfigMap")["data"].get("MIMOOD_DRAIN_TIMEOUT_SECONDS", DRAIN_SECONDS))
    assert spec["terminationGracePeriodSeconds"] > float(command[1]) + drain


def test_deployment_settings_are_server_settings():
    names = list(kubernetes("ConfigMap")["data"]) + [e["name"] for e in container()["env"]]
    for name in names:
        assert name.startswith("MIMOOD_") and name[len("MIMOOD_"):].lower() in SETTINGS, name
    assert container()["envFrom"] == [{"configMapRef": {"name": kubernetes("ConfigMap")["metadata"]["name"]}}]


def test_service_selects_the_deployment_pods_on_the_server_port():
    service, deployment = kubernetes("Service"), kubernetes("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [port] = service["spec"]["ports"]
    assert port["port"] == PORT and probe_port({"httpGet": {"port": port["targetPort"]}}) == PORT


def test_autoscaler_scales_the_deployment_on_cpu():
    hpa, deployment = kubernetes("HorizontalPodAutoscaler"), kubernetes("Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "cpu" in container()["resources"]["requests"]   # utilization is measured against the request


# --- Kubernetes with TLS (the kustomize overlay kubernetes/tls/ on the base kubernetes/) ---

def merge(base, patch):
    """A strategic merge patch as kustomize applies the overlay's: maps merged key by key, lists of named
    items (containers, volumes) merged by name with new ones appended, anything else replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: merge(base[key], value) if key in base else value for key, value in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        named = {item["name"]: item for item in base}
        added = [item for item in patch if item["name"] not in named]
        return [merge(item, next((p for p in patch if p["name"] == item["name"]), {})) for item in base] + added
    return patch


def kustomization(folder):
    [doc] = load(folder / "kustomization.yaml")
    assert doc["kind"] == "Kustomization"
    return doc


def overlay():
    """The TLS overlay's documents: the base's resources with the overlay's patches applied."""
    folder = DEPLOY / "kubernetes/tls"
    spec = kustomization(folder)
    assert spec["resources"] == [".."]
    base = kustomization(DEPLOY / "kubernetes")["resources"]
    docs = [doc for name in base for doc in load(DEPLOY / "kubernetes" / name)]
    for entry in spec["patches"]:
        [patch] = load(folder / entry["path"])
        [target] = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]
        docs[target] = merge(docs[target], patch)
    return {doc["kind"]: doc for doc in docs}


def test_kubernetes_base_lists_every_manifest():
    names = kustomization(DEPLOY / "kubernetes")["resources"]
    assert sorted(names) == sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")


def test_tls_overlay_settings_name_the_mounted_secret_files():
    docs = overlay()
    settings = docs["ConfigMap"]["data"]
    for name in settings:
        assert name.startswith("MIMOOD_") and name[len("MIMOOD_"):].lower() in SETTINGS, name
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    [c] = spec["containers"]   # the patch's container is the base's, not a second one
    [mount] = [m for m in c["volumeMounts"] if m["name"] == "tls"]
    assert mount["readOnly"] and "subPath" not in mount   # a subPath file would never see a renewal
    [volume] = [v for v in spec["volumes"] if v["name"] == "tls"]
    # The keys of a kubernetes.io/tls Secret, and cert-manager's ca.crt.
    assert settings["MIMOOD_TLS_CERTIFICATE_FILE"] == f"{mount['mountPath']}/tls.crt"
    assert settings["MIMOOD_TLS_KEY_FILE"] == f"{mount['mountPath']}/tls.key"
    assert settings["MIMOOD_TLS_CLIENT_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    # Readable by the service's user through its group, by nobody else.
    assert volume["secret"]["defaultMode"] == 0o440
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    [certificate] = load(DEPLOY / "kubernetes/tls/certificate.yaml")
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    assert docs["Service"]["metadata"]["name"] in certificate["spec"]["dnsNames"]


def test_tls_overlay_probes_speak_https_and_can_pass_the_handshake():
    docs = overlay()
    [c] = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    base = container()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {**base[probe]["httpGet"], "scheme": "HTTPS"}
    # The kubelet presents no client certificate: with "required" every HTTPS probe would be refused.
    assert docs["ConfigMap"]["data"]["MIMOOD_TLS_CLIENT_AUTH"] in ("none", "optional")


# --- Compose ---

def test_compose_replicas_health_and_grace_period():
    [compose] = load(DEPLOY / "compose.yaml")
    mimood = compose["services"]["mimood"]
    assert mimood["deploy"]["replicas"] > 1
    assert mimood["expose"] == [str(PORT)]
    assert mimood["healthcheck"]["test"] == ["CMD", "/app/bin/healthcheck"]   # the image's HEALTHCHECK
    assert seconds(mimood["stop_grace_period"]) > DRAIN_SECONDS
    assert mimood.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_compose_nginx_fronts_the_replicas():
    [compose] = load(DEPLOY / "compose.yaml")
    nginx = compose["services"]["nginx"]
    assert nginx["depends_on"]["mimood"]["condition"] == "service_healthy"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in nginx["volumes"]}
    # The http-context files in nginx's conf.d, the upstream first; the site's snippets where it includes them.
    assert mounts["./nginx/upstream.conf"] < mounts["./nginx/request-id.conf"] < mounts["./nginx/mimood.conf"]
    assert all(mounts[f"./nginx/{name}"].startswith("/etc/nginx/conf.d/") for name in
               ("upstream.conf", "request-id.conf", "mimood.conf"))
    assert mounts["./nginx/snippets"] == "/etc/nginx/snippets"
    upstream = (DEPLOY / "nginx/upstream.conf").read_text()
    assert re.search(r"upstream\s+mimood\s*\{", upstream) and f"server mimood:{PORT};" in upstream


SITES = sorted((DEPLOY / "nginx").glob("mimood*.conf"))


@pytest.mark.parametrize("site", SITES, ids=lambda p: p.name)
def test_nginx_sites_share_the_proxy_settings_and_the_upstream(site):
    """Every site (plain, HTTPS, HTTPS to the replicas too) proxies to the one upstream with the shared
    limits, timeouts and headers; the HTTPS ones with the shared TLS settings. Snippets they include exist."""
    text = site.read_text()
    includes = re.findall(r"^\s*include\s+(\S+);", text, re.M)
    assert "snippets/mimood-proxy.conf" in includes
    assert ("snippets/mimood-tls.conf" in includes) == ("ssl;" in text)
    for include in includes:
        assert (DEPLOY / "nginx" / include).is_file(), include
    assert re.findall(r"proxy_pass\s+(\S+);", text) in (["http://mimood"], ["https://mimood"])
    assert "$mimood_request_id" in (DEPLOY / "nginx/snippets/mimood-proxy.conf").read_text()
    assert "map $http_x_request_id $mimood_request_id" in (DEPLOY / "nginx/request-id.conf").read_text()


def test_nginx_forwards_no_client_identity_the_service_would_trust():
    """The service takes the client's identity only from its own TLS handshake (client_subject), never from
    a header: a site that forwarded $ssl_client_* would suggest otherwise."""
    for path in (DEPLOY / "nginx").rglob("*.conf"):
        settings = [line.split("#")[0] for line in path.read_text().splitlines()]
        assert not any("$ssl_client" in line for line in settings), path
