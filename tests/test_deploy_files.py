"""docker compose, Kubernetes and the Dockerfile cannot run here (no container engine), so they are
checked for what would break them: commands that do not exist, arguments the commands refuse,
settings that nothing reads, ports and probes that point nowhere, selectors that match nothing.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from infra.cli import build_parser
from infra.settings import Settings

INFRA = Path(__file__).resolve().parent.parent / "infra"
ROOT = INFRA.parent
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
K8S = [doc for path in sorted((INFRA / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
KNOWN_SETTINGS = set(Settings(database_url="postgresql://x", redis_url="redis://x", cache_url="redis://y",
                              prometheus_multiproc_dir=Path("/m")).to_env())


def k8s(kind: str, name: str | None = None) -> list[dict]:
    return [d for d in K8S if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def check_command(argv: list[str]) -> None:
    """`atelier SUB ARGS` must parse with the real CLI; `python -m MODULE ARGS` must name a runnable module."""
    if argv[0] == "atelier":
        args = build_parser().parse_args(argv[1:])  # SystemExit on an unknown command or argument.
        assert getattr(args, "handler", None), f"atelier {argv[1]} is not available"
    elif argv[:2] == ["python", "-m"]:
        module = argv[2]
        assert importlib.util.find_spec(f"{module}.__main__"), f"python -m {module} has no __main__"
        source = Path(importlib.util.find_spec(f"{module}.__main__").origin).read_text()
        for flag in (a for a in argv[3:] if a.startswith("--")):
            assert f'"{flag}"' in source, f"python -m {module} does not accept {flag}"
    else:
        pytest.fail(f"unexpected command {argv}")


def env_names(mapping) -> set[str]:
    return {name for name in mapping if name.startswith("ATELIER_") or name == "PROMETHEUS_MULTIPROC_DIR"}


# ------------------------------------------------------------------------------------ compose


def test_compose_has_every_service():
    assert {"postgres", "redis", "nginx", "reader", "writer", "worker", "load", "migrate"} <= set(COMPOSE["services"])
    assert COMPOSE["services"]["reader"]["deploy"]["replicas"] >= 2


def test_compose_redis_keeps_acknowledged_writes():
    command = COMPOSE["services"]["redis"]["command"]
    assert "--appendonly yes" in command and "--maxmemory-policy volatile-lru" in command


@pytest.mark.parametrize("service", ["migrate", "load", "reader", "writer", "worker", "nginx"])
def test_compose_commands_are_real(service):
    check_command(COMPOSE["services"][service]["command"])


@pytest.mark.parametrize("service", sorted(COMPOSE["services"]))
def test_compose_environment_names_real_settings(service):
    assert env_names(COMPOSE["services"][service].get("environment", {})) <= KNOWN_SETTINGS


@pytest.mark.parametrize("service", ["reader", "writer"])
def test_compose_healthchecks_probe_readyz_on_the_port_the_app_listens_on(service):
    spec = COMPOSE["services"][service]
    port = spec["command"][spec["command"].index("--port") + 1]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(spec["healthcheck"]["test"])


def test_compose_nginx_points_at_the_app_ports():
    nginx = COMPOSE["services"]["nginx"]["command"]
    reader_port = COMPOSE["services"]["reader"]["command"][-1]
    writer_port = COMPOSE["services"]["writer"]["command"][-1]
    assert nginx[nginx.index("--reader") + 1] == f"reader:{reader_port}"
    assert nginx[nginx.index("--writer") + 1] == f"writer:{writer_port}"
    listen_port = nginx[nginx.index("--listen") + 1].rsplit(":", 1)[1]
    assert any(p.endswith(f":{listen_port}") for p in COMPOSE["services"]["nginx"]["ports"])


# ------------------------------------------------------------------------------------ Kubernetes


def test_k8s_has_the_deployments_services_and_autoscaler():
    assert {d["metadata"]["name"] for d in k8s("Deployment")} >= {"atelier-reader", "atelier-writer", "atelier-worker", "atelier-nginx"}
    hpa = k8s("HorizontalPodAutoscaler", "atelier-reader")[0]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "atelier-reader"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert k8s("Job", "atelier-load")


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def config_keys(container: dict) -> dict[str, str]:
    keys = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        doc = k8s(kind, ref["name"])
        assert doc, f"{kind} {ref['name']} is not defined"
        keys.update(doc[0].get("data") or doc[0].get("stringData"))
    return keys


@pytest.mark.parametrize("doc", k8s("Deployment") + k8s("Job"), ids=lambda d: d["metadata"]["name"])
def test_k8s_commands_env_and_probes_are_real(doc):
    for container in containers(doc):
        keys = config_keys(container)
        assert env_names(keys) <= KNOWN_SETTINGS
        # $(NAME) in a command is expanded by Kubernetes from the container's environment.
        command = [re.sub(r"\$\((\w+)\)", lambda m: keys[m.group(1)], part) for part in container["command"]]
        check_command(command)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if "--port" in command:
            assert int(command[command.index("--port") + 1]) in ports.values()
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            if probe in container and "httpGet" in container[probe]:
                assert container[probe]["httpGet"]["port"] in ports
                assert container[probe]["httpGet"]["path"] == path or probe == "readinessProbe" and path == "/readyz"


@pytest.mark.parametrize("name", ["atelier-reader", "atelier-writer"])
def test_k8s_apps_have_both_probes(name):
    container = containers(k8s("Deployment", name)[0])[0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("service", k8s("Service"), ids=lambda d: d["metadata"]["name"])
def test_k8s_services_select_pods_and_ports_that_exist(service):
    selector = service["spec"]["selector"]
    targets = [d for d in k8s("Deployment") if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert targets, f"Service {service['metadata']['name']} selects no Deployment"
    port_names = {p["name"] for c in containers(targets[0]) for p in c.get("ports", [])}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_k8s_nginx_reaches_the_reader_and_writer_services():
    nginx_config = k8s("ConfigMap", "atelier-nginx")[0]["data"]
    for key, service in (("NGINX_READERS", "atelier-reader"), ("NGINX_WRITER", "atelier-writer")):
        host, port = nginx_config[key].rsplit(":", 1)
        assert host.split(".")[0] == service
        assert int(port) in [p["port"] for p in k8s("Service", service)[0]["spec"]["ports"]]
    # Headless, so nginx sees (and balances over) every reader pod rather than one virtual IP.
    assert k8s("Service", "atelier-reader")[0]["spec"]["clusterIP"] == "None"


# ------------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_copies_what_exists_and_runs_a_real_command():
    text = (INFRA / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies missing {item}"
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    check_command(yaml.safe_load(cmd))
    for package in ("reader", "writer", "worker", "projections", "schema", "infra"):
        assert f"COPY {package} {package}" in text
