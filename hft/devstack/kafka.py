"""Apache Kafka 4 in KRaft mode for the embedded stack: one node, or three on loopback.

The broker is Apache Kafka's own code, run from its Maven Central jars: ``make setup`` resolves
``deploy/kafka/pom.xml`` into a classpath file (:func:`classpath`), and each node runs
``java kafka.Kafka server.properties`` as a combined broker + controller. Every node's state lives
under ``Settings.home / kafka / node-N`` (storage formatted once, with one cluster id for all nodes),
its log in ``Settings.home / logs / kafka[-N].log``; ports derive from ``HFT_PORT_BASE``, so
data and committed offsets survive a stop, a restart and a SIGKILL.

With ``HFT_KAFKA_BROKERS=3`` the three nodes form one quorum (static voters) and the topics get
replication factor 3 with ``min.insync.replicas=2``. Topics are created here, explicitly
(:func:`hft.bus.topics.ensure_topics`): partitions and retention come from the settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from hft.bus.topics import ensure_topics
from hft.config import REPO_ROOT, ConfigurationError, Settings
from hft.devstack.host import find_binary, pid_alive, port_open
from hft.devstack.service import PartStatus, Service, pid_file_orphaned

log = logging.getLogger(__name__)

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
CLASSPATH_FILE = REPO_ROOT / "deploy" / "kafka" / "target" / "classpath.txt"

LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - {name: kafka.request.logger, level: WARN}
      - {name: kafka.controller, level: INFO}
      - {name: org.apache.kafka.clients, level: WARN}
      - {name: state.change.logger, level: WARN}
"""


JMX_EXPORTER = """\
# Prometheus' JMX exporter agent: the broker's own metrics (+ jvm_* and process_*) on /metrics
lowercaseOutputName: true
lowercaseOutputLabelNames: true
includeObjectNames:
  - "kafka.server:type=BrokerTopicMetrics,*"
  - "kafka.server:type=ReplicaManager,*"
  - "kafka.server:type=KafkaRequestHandlerPool,*"
  - "kafka.controller:type=KafkaController,*"
  - "kafka.network:type=RequestMetrics,name=TotalTimeMs,*"
  - "kafka.network:type=SocketServer,*"
  - "kafka.log:type=Log,name=Size,*"
  - "kafka.server:type=group-coordinator-metrics,*"
rules:
  - pattern: ".*"
"""


def _agent_jar(cp: str) -> tuple[str, str]:
    """Split the resolved classpath into (the broker's classpath, the JMX exporter agent's jar)."""
    jars = cp.split(os.pathsep)
    agent = [j for j in jars if "jmx_prometheus_javaagent" in j]
    return os.pathsep.join(j for j in jars if j not in agent), (agent[0] if agent else "")


def classpath(resolve: bool = True) -> str:
    """The broker's classpath, resolved from Maven Central by ``deploy/kafka/pom.xml`` (cached)."""
    if not CLASSPATH_FILE.exists() or CLASSPATH_FILE.stat().st_mtime < POM.stat().st_mtime:
        if not resolve:
            raise ConfigurationError(f"Kafka's classpath missing at {CLASSPATH_FILE}: run `make setup`")
        mvn = find_binary("mvn", hint="install Maven (apt-get install maven) or run `make setup`")
        log.info("resolving Apache Kafka's jars with Maven (once)")
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:build-classpath",
                f"-Dmdep.outputFile={CLASSPATH_FILE}",
            ],
            check=True,
            capture_output=True,
        )
    cp = CLASSPATH_FILE.read_text().strip()
    missing = [j for j in cp.split(os.pathsep) if not Path(j).exists()]
    if missing:
        CLASSPATH_FILE.unlink(missing_ok=True)
        if resolve:
            return classpath(resolve=True)
        raise ConfigurationError(f"Kafka jars missing ({missing[0]}): run `make setup`")
    return cp


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker + controller) of the embedded cluster."""

    node_id: int
    port: int
    controller_port: int
    dir: Path

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"


class KafkaCluster(Service):
    """Start, stop and inspect the embedded Apache Kafka nodes of one Settings
    (``HFT_KAFKA_BOOTSTRAP`` names an external cluster instead: only its topics are ensured)."""

    name = "kafka"
    start_timeout = 90.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = settings.home_dir / "kafka"

    # ---- layout ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        n = self.s.kafka_brokers
        return [
            Node(i, self.s.kafka_port(i), self.s.kafka_controller_port(i), self.root / f"node-{i}")
            for i in range(1, n + 1)
        ]

    def node_name(self, node: Node) -> str:
        """The node's name in pid files and logs: ``kafka`` alone, ``kafka-N`` in a cluster."""
        return "kafka" if self.s.kafka_brokers == 1 else f"kafka-{node.node_id}"

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def _pidfile(self, node: Node) -> Path:
        return self.pidfile(self.node_name(node))

    def node_log(self, node: Node) -> Path:
        return self.logfile(self.node_name(node))

    def _properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@{self.host}:{n.controller_port}" for n in self.nodes)
        rf = min(3, self.s.kafka_brokers)
        isr = 2 if rf >= 3 else 1
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "listeners": f"PLAINTEXT://{self.host}:{node.port},CONTROLLER://{self.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": node.data,
            "num.partitions": self.s.kafka_partitions,
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 8,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "group.initial.rebalance.delay.ms": 0,
            # topics are created by ensure_topics with their settings, never by a typo
            "auto.create.topics.enable": "false",
            "log.retention.ms": int(self.s.kafka_retention_hours * 3_600_000),
            "log.segment.bytes": 256 * 1024 * 1024,
            # a killed leader's partitions move within seconds, not after the default 18 s
            "broker.session.timeout.ms": 6000,
            "broker.heartbeat.interval.ms": 1000,
            "unclean.leader.election.enable": "false",
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    # ---- lifecycle ------------------------------------------------------------------------
    def _cluster_id(self, cp: str) -> str:
        path = self.root / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        out = (
            subprocess.run(
                ["java", "-cp", _agent_jar(cp)[0], "kafka.tools.StorageTool", "random-uuid"],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()
        )
        cid = out[-1] if out else uuid.uuid4().hex[:22]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cid + "\n")
        return cid

    def _format(self, node: Node, cp: str, cluster_id: str) -> None:
        """Format the node's KRaft storage once (a formatted directory has meta.properties)."""
        if (node.data / "meta.properties").exists():
            return
        node.data.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            [
                "java",
                "-cp",
                _agent_jar(cp)[0],
                f"-Dlog4j2.configurationFile={self._log4j()}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(node.config),
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise ConfigurationError(
                f"formatting Kafka storage of node {node.node_id} failed: "
                f"{(res.stderr or res.stdout).strip()[-500:]}"
            )

    def _log4j(self) -> Path:
        path = self.root / "log4j2.yaml"
        if not path.exists() or path.read_text() != LOG4J2:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(LOG4J2)
        return path

    def alive(self, node: Node) -> bool:
        pf = self._pidfile(node)
        try:
            pid = int(pf.read_text().strip())
        except (OSError, ValueError):
            return False
        return pid_alive(pid)

    def node_ready(self, node: Node) -> bool:
        return self.alive(node) and port_open(self.host, node.port)

    @property
    def managed(self) -> bool:
        return not self.s.kafka_bootstrap

    def log(self) -> Path:
        return self.node_log(self.nodes[0])

    def start(self, timeout: float | None = None) -> None:
        """Start every node that is not running, wait for the cluster, create the topics."""
        timeout = timeout or self.start_timeout
        if not self.managed:
            ensure_topics(self.s, timeout=timeout)  # an external cluster gets the same topics
            return
        nodes = [n for n in self.nodes if not self.node_ready(n)]
        if nodes:
            find_binary("java", hint="install OpenJDK 17 (apt-get install openjdk-17-jre-headless)")
            cp = classpath()
            cid = self._cluster_id(cp)
            for node in nodes:
                self.start_node(node, cp, cid)
            deadline = time.monotonic() + timeout
            for node in nodes:
                while not self.node_ready(node):
                    if not self.alive(node):
                        raise ConfigurationError(
                            f"Kafka node {node.node_id} exited during start-up; "
                            f"see {self.node_log(node)}:\n{_tail(self.node_log(node))}"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"Kafka node {node.node_id} not listening after {timeout:.0f}s; "
                            f"see {self.node_log(node)}"
                        )
                    time.sleep(0.2)
        ensure_topics(self.s, timeout=timeout)

    def start_node(self, node: Node, cp: str | None = None, cluster_id: str | None = None) -> int:
        """Start one node (formatting its storage the first time); return its pid."""
        cp = cp or classpath()
        cluster_id = cluster_id or self._cluster_id(cp)
        node.dir.mkdir(parents=True, exist_ok=True)
        node.config.write_text(self._properties(node))
        self._format(node, cp, cluster_id)
        cp, agent = _agent_jar(cp)
        jmx = []
        if agent:
            cfg = self.root / "jmx-exporter.yaml"
            cfg.write_text(JMX_EXPORTER)
            jmx = [f"-javaagent:{agent}={self.host}:{self.s.kafka_metrics_port(node.node_id)}:{cfg}"]
        heap = self.s.kafka_heap_mb
        cmd = [
            "java",
            *jmx,
            f"-Xms{min(256, heap // 2)}m",
            f"-Xmx{heap}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-XX:+UseStringDeduplication",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j()}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(node.config),
        ]
        out = self.node_log(node).open("ab")
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=node.dir,
        )
        self._pidfile(node).write_text(str(proc.pid))
        log.info("kafka node %d started (pid %d, port %d)", node.node_id, proc.pid, node.port)
        return proc.pid

    def kill_node(self, node: Node, sig: int = signal.SIGKILL) -> None:
        """Signal one node (SIGKILL by default: the fault tests' crash) and wait until it is gone."""
        pf = self._pidfile(node)
        try:
            pid = int(pf.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + (5 if sig == signal.SIGKILL else 60)
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
        pf.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop every node cleanly (SIGTERM: the broker flushes and hands over its leaderships)."""
        if not self.managed:
            return
        for node in reversed(self.nodes):
            self.kill_node(node, signal.SIGTERM)

    def crashed(self) -> bool:
        """A node we started is gone without a stop (its pid file remains)."""
        return any(pid_file_orphaned(self._pidfile(n)) for n in self.nodes)

    def healthy(self) -> bool:
        if not self.managed:
            host, _, port = self.s.kafka_bootstrap_servers().split(",")[0].rpartition(":")
            return port_open(host, int(port))
        return all(self.node_ready(n) for n in self.nodes)

    def status(self) -> PartStatus:
        boot = self.s.kafka_bootstrap_servers()
        if not self.managed:
            return PartStatus(self.name, boot, self.healthy(), "external", managed=False)
        return PartStatus(self.name, boot, self.healthy(), self.detail())

    def detail(self) -> str:
        up = sum(self.node_ready(n) for n in self.nodes)
        n = len(self.nodes)
        return f"Apache Kafka {kafka_version()} (KRaft), {up}/{n} node{'s' if n > 1 else ''} up"


def kafka_version() -> str:
    """The pinned broker version, read from the pom."""
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    return m.group(1) if m else "?"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
