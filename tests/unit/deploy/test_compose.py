"""docker-compose.yml, deploy/prometheus.yml and the Grafana provisioning hold together.

No Docker engine runs on this machine and the docker CLI here has no compose plugin, so the
file is parsed and checked here; ``docker compose config`` runs too when the plugin exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hft.config import REPO_ROOT, Settings
from hft.processes import PROCESSES, scrape_targets

COMPOSE = REPO_ROOT / "docker-compose.yml"
DEPLOY = REPO_ROOT / "deploy"
PUBLISH = re.compile(r"^\$\{HFT_PUBLISH_HOST:-127\.0\.0\.1\}:\d+:\d+$|^127\.0\.0\.1:\d+:\d+$")
INFRA = {"kafka", "timescaledb", "redis", "mlflow", "prometheus", "grafana", "airflow-apiserver",
         "airflow-scheduler", "airflow-dag-processor"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose["services"]
    return out


def _compose_settings() -> Settings:
    return Settings(port_base=15400, kafka_bootstrap="kafka:9092", market="binance",
                    mlflow_tracking_uri="http://mlflow:5000")


def test_stack_has_every_part_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= INFRA, INFRA - set(services)


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: {image} has no repository"
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} uses :latest"
        assert re.search(r"\d", tag), f"{name}: {image} tag is not a version"


def test_kafka_runs_kraft_without_zookeeper(services: dict[str, dict[str, Any]]) -> None:
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(services).lower()


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name


def test_published_ports_bind_loopback_unless_configured(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the HOST:PUBLISHED:TARGET string form"
            assert PUBLISH.match(port), f"{name}: {port} does not bind 127.0.0.1 by default"
            published += 1
    assert published >= 5


def test_each_application_process_runs_from_the_one_app_image(services: dict[str, dict[str, Any]]) -> None:
    s = _compose_settings()
    app_images = set()
    for spec in PROCESSES:
        if not spec.enabled(s):
            continue  # the replay exchange is a local/demo part
        if spec.name == "airflow":  # `airflow standalone` locally; its components as services here
            assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"} <= set(services)
            continue
        svc = services.get(spec.name)
        assert svc is not None, f"process {spec.name} has no compose service"
        assert svc["command"] == ["hft", "run", spec.name]
        assert svc["environment"]["HFT_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert "timescaledb:5432" in svc["environment"]["HFT_POSTGRES_URL"]
        assert svc["environment"]["HFT_REDIS_URL"].startswith("redis://redis:")
        assert svc["environment"]["HFT_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        app_images.add(svc["image"])
    assert len(app_images) == 1
    assert services["api"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_no_secret_has_a_default(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for var in ("POSTGRES_PASSWORD", "HFT_API_KEY", "AIRFLOW_JWT_SECRET", "GRAFANA_ADMIN_PASSWORD"):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, f"{var} unused"
        assert all(u.startswith(":?") for u in uses), f"{var} must be required (${{{var}:?...}}), not defaulted"


def test_prometheus_scrapes_every_process_by_service_name(services: dict[str, dict[str, Any]]) -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    s = _compose_settings()
    expected = scrape_targets(s)
    for job, port in expected.items():
        assert job in jobs, f"deploy/prometheus.yml misses job {job}"
        assert jobs[job] == [f"{job}:{port}"], f"{job}: {jobs[job]} != {job}:{port}"
    for job, targets in jobs.items():
        for target in targets:
            host = target.split(":")[0]
            assert host in services or host == "localhost", f"{job} scrapes {host}, not a compose service"


def test_prometheus_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    proc = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_provisions_prometheus_and_dashboards(services: dict[str, dict[str, Any]]) -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/hft.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    mounts = services["grafana"]["volumes"]
    assert any(m.startswith("./deploy/grafana/dashboards:") and m.split(":")[1] == path for m in mounts)
    assert any(m.startswith("./deploy/grafana/provisioning:/etc/grafana/provisioning") for m in mounts)


def test_grafana_dashboards_cover_latency_throughput_lag_errors_and_outcomes() -> None:
    boards = sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
    assert boards
    exprs, titles = [], []
    for board in boards:
        doc = json.loads(board.read_text())
        assert doc["uid"]
        for panel in doc["panels"]:
            titles.append(panel["title"].lower())
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == "prometheus"
                exprs.append(target["expr"])
    for topic in ("latency", "throughput", "lag", "errors", "model outcomes"):
        assert any(topic in t for t in titles), f"no panel or row about {topic}"
    assert any("tick_to_signal" in e for e in exprs)


def test_grafana_queries_name_metrics_the_code_defines() -> None:
    """A renamed metric must not leave a silently empty Grafana panel."""
    defined = set()
    for folder in ("hft", "streamers", "api", "workers", "dashboard"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            defined |= set(re.findall(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:]+)\"", text))
            # custom collectors list (name, help, value) tuples
            defined |= set(re.findall(r"\(\s*\"([a-z]+_[a-z_]+)\",\s*\"[A-Z]", text))
    builtin = {"up", "process_resident_memory_bytes", "process_cpu_seconds_total", "time"}
    for board in (DEPLOY / "grafana/dashboards").glob("*.json"):
        for panel in json.loads(board.read_text())["panels"]:
            for target in panel.get("targets", []):
                for name in re.findall(r"\b([a-z_]+_[a-z_]+|up)\b(?=[\[{)\s]|$)", target["expr"]):
                    if name.startswith("kafka_") or name in builtin or name in {"histogram_quantile"}:
                        continue
                    base = re.sub(r"_(bucket|count|sum|total)$", "", name)
                    assert base in defined or name in defined, f"{board.name}: {name} not defined in the code"


def test_dockerfile_is_multi_stage_with_cpu_torch() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2, stages
    assert "requirements/lock.txt" in text
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r"^USER\s+(?!root)\w+", text, flags=re.MULTILINE)
    lock = (REPO_ROOT / "requirements/lock.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", lock, flags=re.MULTILINE)


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    lines = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".hft", ".git"} <= lines


SECRETS = {"POSTGRES_PASSWORD": "x", "HFT_API_KEY": "x", "AIRFLOW_JWT_SECRET": "x", "GRAFANA_ADMIN_PASSWORD": "x"}


def test_docker_compose_config_when_the_cli_can(tmp_path: Path) -> None:
    """``docker compose config`` (v2 plugin) or, failing that, Debian's docker-compose 1.29."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        env = tmp_path / ".env"
        env.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
        proc = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--env-file", str(env), "config", "--quiet"],
                              capture_output=True, text=True, check=False, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stderr
        return
    v1 = shutil.which("docker-compose")
    if v1 is None:
        pytest.skip("no docker compose plugin or docker-compose here (and no engine): parsed above instead")
    # v1 predates the top-level `name:` of the Compose spec; everything else it validates
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(re.sub(r"^name: .*$", "", COMPOSE.read_text(), flags=re.MULTILINE))
    cmd = [v1, "-f", str(copy), "--project-directory", str(REPO_ROOT), "config", "-q"]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp_path,
                        env={"PATH": "/usr/bin:/bin", **SECRETS})
    missing = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert missing.returncode != 0, "secrets must be required"
    assert "POSTGRES_PASSWORD" in missing.stderr
