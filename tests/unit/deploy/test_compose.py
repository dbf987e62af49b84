"""docker-compose.yml, deploy/prometheus.yml and the Grafana provisioning hold together.

No Docker engine runs on this machine and the docker CLI here has no compose plugin, so the
file is parsed and checked here; ``docker compose config`` runs too when the plugin exists.

The stack comes in two shapes: ``one`` (docker-compose.yml, one Kafka node) and ``three``
(docker-compose.yml + docker-compose.kafka3.yml, three KRaft nodes). Both are checked against the
embedded stack's Kafka (hft/devstack/kafka.py, deploy/kafka/pom.xml) and its topic settings.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from hft.bus.topics import topic_specs
from hft.config import REPO_ROOT, Settings
from hft.devstack.kafka import KafkaCluster
from hft.devstack.supervisor import PROCESSES, scrape_targets

COMPOSE = REPO_ROOT / "docker-compose.yml"
KAFKA3 = REPO_ROOT / "docker-compose.kafka3.yml"
DEPLOY = REPO_ROOT / "deploy"
PUBLISH = re.compile(r"^\$\{HFT_PUBLISH_HOST:-127\.0\.0\.1\}:\d+:\d+$|^127\.0\.0\.1:\d+:\d+$")
INFRA = {
    "kafka",
    "timescaledb",
    "redis",
    "mlflow",
    "prometheus",
    "grafana",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = compose["services"]
    return out


def _compose_settings() -> Settings:
    """The settings compose's services run with (every stack service external, as x-hft-env says)."""
    return Settings(
        port_base=15400,
        kafka_bootstrap="kafka:9092",
        market="binance",
        mlflow_tracking_uri="http://mlflow:5000",
        postgres_url="postgresql+psycopg://postgres:x@timescaledb:5432/hft",
        redis_url="redis://:x@redis:6379/0",
    )


# ---- the two shapes: compose's merge of an override file, and its ${VAR} interpolation ---------
KAFKA_NODES = {"one": ["kafka"], "three": ["kafka", "kafka-2", "kafka-3"]}
SHAPES = list(KAFKA_NODES)
KAFKA3_BOOTSTRAP = "kafka:9092,kafka-2:9092,kafka-3:9092"
SECRETS = {
    "POSTGRES_PASSWORD": "x",
    "REDIS_PASSWORD": "x",
    "HFT_API_KEY": "x",
    "AIRFLOW_JWT_SECRET": "x",
    "GRAFANA_ADMIN_PASSWORD": "x",
    "MLFLOW_PASSWORD": "x",
    "MLFLOW_SECRET_KEY": "x",
}
_VAR = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?])([^}]*))?\}|(\w+))")


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file, for the keys these files use.

    Mappings merge (the override's values win), ``volumes`` merge by their container path, ``ports``
    add up, any other list (``command``) is replaced.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = _merge(base[k], v, k) if k in base else v
        return out
    if key == "volumes" and isinstance(base, list):
        by_target = {str(v).split(":")[1]: v for v in base}
        by_target.update({str(v).split(":")[1]: v for v in override})
        return list(by_target.values())
    if key == "ports" and isinstance(base, list):
        return base + [p for p in override if p not in base]
    return override


@functools.cache
def _raw(shape: str) -> dict[str, Any]:
    """The compose model of one shape, merged but not interpolated."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    if shape == "three":
        data = _merge(data, yaml.safe_load(KAFKA3.read_text()))
    return data


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` as compose resolves them."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op and missing and op.endswith("-"):
            return str(arg)
        if op and missing and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return current or ""

    return _VAR.sub(one, value)


def _services(shape: str, **env: str) -> dict[str, dict[str, Any]]:
    """The services of one shape as compose runs them, with ``env`` as the .env file."""
    out: dict[str, dict[str, Any]] = _interpolate(_raw(shape)["services"], {**SECRETS, **env})
    return out


def _kafka_properties(environment: Mapping[str, Any]) -> dict[str, str]:
    """server.properties from apache/kafka's environment (KAFKA_FOO_BAR → foo.bar, __ → _, ___ → -)."""
    props = {}
    for key, value in environment.items():
        if key.startswith("KAFKA_"):
            name = key[len("KAFKA_") :].lower().replace("___", "-").replace("__", "\0").replace("_", ".")
            props[name.replace("\0", "_")] = str(value)
    return props


def _embedded_properties(settings: Settings, node_id: int) -> dict[str, str]:
    cluster = KafkaCluster(settings)
    text = cluster._properties(cluster.node(node_id))
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def _pom_kafka_version() -> str:
    found = re.search(
        r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", (DEPLOY / "kafka/pom.xml").read_text()
    )
    assert found, "deploy/kafka/pom.xml has no <kafka.version>"
    return found.group(1)


def test_stack_has_every_part_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= INFRA, INFRA - set(services)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_image_is_pinned(shape: str) -> None:
    for name, svc in _raw(shape)["services"].items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: {image} has no repository"
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image} uses :latest"
        assert re.search(r"\d", tag), f"{name}: {image} tag is not a version"


@pytest.mark.parametrize("shape", SHAPES)
def test_kafka_runs_kraft_without_zookeeper(shape: str) -> None:
    services = _services(shape)
    for node in KAFKA_NODES[shape]:
        assert services[node]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    kafka_like = {n for n, svc in services.items() if str(svc.get("image", "")).startswith("apache/kafka:")}
    assert kafka_like == {*KAFKA_NODES[shape], "kafka-init"}
    assert "zookeeper" not in json.dumps(services).lower()


@pytest.mark.parametrize("shape", SHAPES)
def test_kafka_image_is_the_embedded_brokers_version(shape: str) -> None:
    """deploy/kafka/pom.xml's kafka.version runs locally; the same Apache Kafka runs here."""
    version = _pom_kafka_version()
    for name in [*KAFKA_NODES[shape], "kafka-init"]:
        assert _raw(shape)["services"][name]["image"] == f"apache/kafka:{version}", name


# server.properties that differ between hosts by nature; the quorum and node ids are checked below,
# and retention is set per topic by kafka-init (no topic is auto-created to fall back on the default)
HOST_SPECIFIC = {
    "node.id",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "controller.quorum.voters",
    "log.dirs",
    "log.retention.ms",
}


@pytest.mark.parametrize(
    ("shape", "env"), [("one", {}), ("three", {}), ("one", {"HFT_KAFKA_PARTITIONS": "12"})]
)
def test_kafka_brokers_are_configured_like_the_embedded_ones(shape: str, env: dict[str, str]) -> None:
    services = _services(shape, **env)
    nodes = KAFKA_NODES[shape]
    settings = Settings(kafka_brokers=len(nodes), kafka_partitions=int(env.get("HFT_KAFKA_PARTITIONS", 4)))
    for node_id, name in enumerate(nodes, start=1):
        compose = _kafka_properties(services[name]["environment"])
        embedded = _embedded_properties(settings, node_id)
        assert compose["node.id"] == embedded["node.id"] == str(node_id)
        assert compose["auto.create.topics.enable"] == "false"
        ours = {k: v for k, v in compose.items() if k not in HOST_SPECIFIC}
        theirs = {k: v for k, v in embedded.items() if k not in HOST_SPECIFIC}
        assert ours == theirs, f"{name} differs from the embedded node {node_id}"


@pytest.mark.parametrize("shape", SHAPES)
def test_kafka_nodes_form_one_quorum_and_advertise_their_service_names(shape: str) -> None:
    services = _services(shape)
    nodes = KAFKA_NODES[shape]
    voters = ",".join(f"{i}@{name}:9093" for i, name in enumerate(nodes, start=1))
    if shape == "three":
        assert voters == "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    cluster_ids, volumes, host_ports = set(), set(), set()
    for name in nodes:
        env = services[name]["environment"]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters, name
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(","), name
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"].split(","), name
        host = re.search(r"HOST://127\.0\.0\.1:(\d+)", env["KAFKA_ADVERTISED_LISTENERS"])
        assert host, f"{name}: host clients need a HOST listener on every node"
        assert f"127.0.0.1:{host.group(1)}:{host.group(1)}" in services[name]["ports"], name
        host_ports.add(host.group(1))
        cluster_ids.add(env.get("CLUSTER_ID"))
        (volume,) = [v for v in services[name]["volumes"] if v.endswith(":/var/lib/kafka/data")]
        volumes.add(volume.split(":")[0])
        assert services[name]["healthcheck"]["test"][-1].startswith(
            "/opt/kafka/bin/kafka-broker-api-versions.sh"
        )
    assert len(cluster_ids) == 1, "every node of one cluster formats its storage with one cluster id"
    assert len(volumes) == len(host_ports) == len(nodes)
    if shape == "three":  # a single-voter log never becomes a three-voter one: its own volume
        assert "kafka-data" not in volumes


def test_three_node_override_replicates_thrice_and_acks_with_two() -> None:
    services = _services("three")
    for name in KAFKA_NODES["three"]:
        env = services[name]["environment"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3", name
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
    init = services["kafka-init"]["environment"]
    assert (init["TOPIC_REPLICATION_FACTOR"], init["TOPIC_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert "docker compose -f docker-compose.yml -f docker-compose.kafka3.yml up" in KAFKA3.read_text()
    assert "kafka-2" not in _raw("one")["services"], "the single-node stack has one Kafka node"


@pytest.mark.parametrize("shape", SHAPES)
def test_every_kafka_client_bootstraps_from_every_node(shape: str) -> None:
    services = _services(shape)
    expected = ",".join(f"{name}:9092" for name in KAFKA_NODES[shape])
    clients = [n for n, svc in services.items() if "HFT_KAFKA_BOOTSTRAP" in (svc.get("environment") or {})]
    assert {"kafka-init", "market-producer", "tick-ingestor", "feature-calculator"} <= set(clients)
    for name in clients:
        assert services[name]["environment"]["HFT_KAFKA_BOOTSTRAP"] == expected, name
    # the apps' own ensure_topics then asks for the replication kafka-init used
    rf = Settings(kafka_bootstrap=expected).kafka_replication()
    assert str(rf) == services["kafka-init"]["environment"]["TOPIC_REPLICATION_FACTOR"]
    exporter = services["kafka-exporter"]["command"]
    assert sorted(exporter) == sorted(f"--kafka.server={name}:9092" for name in KAFKA_NODES[shape])


@pytest.mark.parametrize("shape", SHAPES)
def test_application_processes_start_after_the_topics_exist(shape: str) -> None:
    services = _services(shape)
    init = services["kafka-init"]
    assert init["restart"] == "no"
    for node in KAFKA_NODES[shape]:
        assert init["depends_on"][node] == {"condition": "service_healthy"}, node
    apps = [n for n, svc in services.items() if (svc.get("command") or [""])[0] == "hft"]
    assert len(apps) >= 6
    for name in apps:
        deps = services[name]["depends_on"]
        assert deps["kafka"] == {"condition": "service_healthy"}, name
        assert deps["kafka-init"] == {"condition": "service_completed_successfully"}, name
        for var in ("HFT_KAFKA_PARTITIONS", "HFT_KAFKA_RETENTION_HOURS"):  # the topics kafka-init made
            assert services[name]["environment"][var] == init["environment"][var], f"{name}: {var}"


STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _run_kafka_init(services: dict[str, dict[str, Any]], tmp_path: Path) -> list[list[str]]:
    """Run kafka-init's script with a kafka-topics.sh that records its arguments."""
    if shutil.which("sh") is None or shutil.which("awk") is None:
        pytest.skip("needs sh and awk")
    command = services["kafka-init"]["command"]
    assert command[:2] == ["/bin/sh", "-ec"]
    script = command[2]
    real = "/opt/kafka/bin/kafka-topics.sh"
    assert real in script
    stub = tmp_path / "kafka-topics.sh"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    env = {**services["kafka-init"]["environment"], "PATH": os.environ["PATH"], "STUB_LOG": str(log)}
    proc = subprocess.run(
        ["sh", "-ec", script.replace(real, str(stub))],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]


@pytest.mark.parametrize(
    ("shape", "env"),
    [
        ("one", {}),
        ("one", {"HFT_KAFKA_PARTITIONS": "12", "HFT_KAFKA_RETENTION_HOURS": "200.5"}),
        ("three", {}),
        ("three", {"HFT_KAFKA_RETENTION_HOURS": "0.5"}),
    ],
)
def test_kafka_init_creates_the_topics_of_topic_specs(
    shape: str, env: dict[str, str], tmp_path: Path
) -> None:
    services = _services(shape, **env)
    init_env = services["kafka-init"]["environment"]
    settings = Settings(
        kafka_bootstrap=init_env["HFT_KAFKA_BOOTSTRAP"],
        kafka_partitions=int(init_env["HFT_KAFKA_PARTITIONS"]),
        kafka_retention_hours=float(init_env["HFT_KAFKA_RETENTION_HOURS"]),
    )
    if not env:  # the documented defaults
        assert topic_specs(settings)[settings.topic_ticks][1]["retention.ms"] == "259200000"
    created = {}
    for args in _run_kafka_init(services, tmp_path):
        assert _option(args, "--bootstrap-server") == [init_env["HFT_KAFKA_BOOTSTRAP"]]
        if "--create" not in args:
            continue
        assert "--if-not-exists" in args
        (topic,) = _option(args, "--topic")
        (partitions,) = _option(args, "--partitions")
        (replication,) = _option(args, "--replication-factor")
        config = dict(c.split("=", 1) for c in _option(args, "--config"))
        created[topic] = (int(partitions), config, int(replication))
    expected = {t: (p, c, settings.kafka_replication()) for t, (p, c) in topic_specs(settings).items()}
    assert created == expected
    assert set(created) == {"market_ticks", "market_ticks.dlq"}
    assert created["market_ticks.dlq"][0] == 1
    if shape == "three":
        assert created["market_ticks"][2] == 3
        assert created["market_ticks"][1]["min.insync.replicas"] == "2"


@pytest.mark.parametrize("shape", SHAPES)
def test_depends_on_names_existing_services(shape: str) -> None:
    services = _raw(shape)["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert dep != name


@pytest.mark.parametrize("shape", SHAPES)
def test_published_ports_bind_loopback_unless_configured(shape: str) -> None:
    published: list[str] = []
    for name, svc in _raw(shape)["services"].items():
        for port in svc.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the HOST:PUBLISHED:TARGET string form"
            assert PUBLISH.match(port), f"{name}: {port} does not bind 127.0.0.1 by default"
            published.append(port.rsplit(":", 2)[1])
    assert len(published) >= 5
    assert len(published) == len(set(published)), f"a host port is published twice: {sorted(published)}"


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
        assert svc["environment"]["HFT_REDIS_URL"].startswith("redis://:")  # with the password
        assert "@redis:6379/" in svc["environment"]["HFT_REDIS_URL"]
        assert svc["environment"]["HFT_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        app_images.add(svc["image"])
    assert len(app_images) == 1
    assert services["api"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_no_secret_has_a_default(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for var in (
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "HFT_API_KEY",
        "AIRFLOW_JWT_SECRET",
        "GRAFANA_ADMIN_PASSWORD",
        "MLFLOW_PASSWORD",
        "MLFLOW_SECRET_KEY",
    ):
        uses = re.findall(r"\$\{" + var + r"([^}]*)\}", text)
        assert uses, f"{var} unused"
        assert all(u.startswith(":?") for u in uses), (
            f"{var} must be required (${{{var}:?...}}), not defaulted"
        )


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
    proc = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
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


# metrics of the exporters (the broker's JMX agent, kafka-exporter, PostgreSQL's and Redis' exporters,
# Airflow's OTLP bridge, MLflow's --expose-prometheus), not of our code
EXPORTED = ("kafka_", "pg_", "redis_", "airflow_", "otlp_bridge_", "mlflow_", "jvm_")


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
                    if name.startswith(EXPORTED) or name in builtin or name in {"histogram_quantile"}:
                        continue  # exporters' metrics: tests/integration/test_stack_observability.py
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
    locked = re.search(r"^torch==([\d.]+)(\+cpu)?$", lock, flags=re.MULTILINE)
    assert locked, "the lock pins torch"
    if locked.group(2):  # the CPU build in the lock: installed as it is, from the CPU index
        return
    # PyPI's CUDA build in the lock: the image drops it and its NVIDIA libraries, and installs the
    # same version's CPU build instead
    cpu = re.search(r"^ARG TORCH_CPU=([\d.]+)\+cpu$", text, flags=re.MULTILINE)
    assert cpu, "deploy/Dockerfile names the CPU torch it installs (ARG TORCH_CPU=X+cpu)"
    assert cpu.group(1) == locked.group(1), f"image torch {cpu.group(1)} != lock's {locked.group(1)}"
    assert re.search(
        r'--no-deps --index-url https://download\.pytorch\.org/whl/cpu "torch==\$\{TORCH_CPU\}"', text
    )
    dropped = re.search(r"grep -Ev '(\^\([^']+\))' requirements/lock\.txt", text)
    assert dropped, "deploy/Dockerfile filters the CUDA build out of the lock"
    gone = {line.split("==")[0] for line in lock.splitlines() if re.match(dropped.group(1), line)}
    cuda = {n for n in gone if n in {"torch", "triton"} or n.startswith(("nvidia-", "cuda-"))}
    assert gone == cuda, f"the filter drops more than the CUDA build: {sorted(gone - cuda)}"
    assert {"torch", "triton"} <= gone


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    lines = set((REPO_ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".hft", ".git"} <= lines


@pytest.mark.parametrize("shape", SHAPES)
def test_docker_compose_config_when_the_cli_can(shape: str, tmp_path: Path) -> None:
    """``docker compose config`` (v2 plugin) or, failing that, Debian's docker-compose 1.29."""
    files = [COMPOSE, KAFKA3] if shape == "three" else [COMPOSE]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        env = tmp_path / ".env"
        env.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
        args = [a for f in files for a in ("-f", str(f))]
        proc = subprocess.run(
            [docker, "compose", *args, "--env-file", str(env), "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO_ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        return
    v1 = shutil.which("docker-compose")
    if v1 is None:
        pytest.skip("no docker compose plugin or docker-compose here (and no engine): parsed above instead")
    # v1 predates the top-level `name:` of the Compose spec; everything else it validates
    args = []
    for f in files:
        copy = tmp_path / f.name
        copy.write_text(re.sub(r"^name: .*$", "", f.read_text(), flags=re.MULTILINE))
        args += ["-f", str(copy)]
    cmd = [v1, *args, "--project-directory", str(REPO_ROOT), "config", "-q"]
    ok = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **SECRETS},
    )
    missing = subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}
    )
    assert ok.returncode == 0, ok.stderr
    assert missing.returncode != 0, "secrets must be required"
    assert "POSTGRES_PASSWORD" in missing.stderr
