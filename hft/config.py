"""One typed Settings object for every process (env prefix ``HFT_``, ``.env`` supported).

Build it with :func:`get_settings`; nothing here touches the network or the disk at
import time. Ports of the embedded stack derive from ``HFT_PORT_BASE`` unless set one
by one, so a test run and a demo run never collide.

Passwords of the embedded services (PostgreSQL, Redis, supervisord) not given in the settings
are generated on first use into ``<HFT_HOME>/credentials.json`` (mode 0600) and read from there
by every process of that home: building Settings for the embedded stack reads that file (and
writes it once). A service named by URL (``HFT_POSTGRES_URL``, ``HFT_REDIS_URL``) brings its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigurationError(RuntimeError):
    """A setting or a missing dependency that needs a human: exit non-zero, do not retry."""


class TransientError(RuntimeError):
    """A dependency that is briefly unavailable: back off and retry."""


CREDENTIALS_FILE = "credentials.json"
# settings generated for the embedded stack when not given, and the URL setting that makes each unneeded
GENERATED_SECRETS: dict[str, str | None] = {
    "postgres_password": "postgres_url",
    "redis_password": "redis_url",
    "supervisor_password": None,
    "dashboard_password": None,
    "mlflow_password": "mlflow_tracking_uri",
    "mlflow_reader_password": "mlflow_tracking_uri",
}


def credentials_file(home: Path) -> Path:
    """Where the embedded stack's generated passwords live."""
    return (home if home.is_absolute() else Path.cwd() / home) / CREDENTIALS_FILE


def load_credentials(home: Path) -> dict[str, str]:
    """The generated passwords under ``home``: created on first use (mode 0600, owner only), and
    completed when a newer version knows more of them. Two processes starting at once agree."""
    path = credentials_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(current.get(k) for k in GENERATED_SECRETS):
        return current
    fresh = {k: current.get(k) or secrets.token_hex(20) for k in GENERATED_SECRETS}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(fresh, f, indent=1)
    try:
        if current:
            os.replace(tmp, path)  # completing an older file: same values, more keys
        else:
            with contextlib.suppress(FileExistsError):  # another process was first: its file wins
                os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def mask_url(url: str) -> str:
    """``url`` with its password shown as ``***`` (for status tables and logs)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# Offsets from port_base for the parts of the embedded stack and the application processes.
PORT_OFFSETS: dict[str, int] = {
    "postgres": 0,
    "redis": 1,
    "kafka": 2,
    "mlflow": 3,
    "prometheus": 4,
    "airflow": 5,
    "api": 6,
    "dashboard": 7,
    "exchange": 8,
    "supervisor": 9,
    "airflow_worker_logs": 10,
    "airflow_trigger_logs": 11,
    # Kafka: node 1's controller; nodes 2 and 3 of a three-node cluster (client, controller)
    "kafka_controller": 12,
    "kafka_2": 13,
    "kafka_controller_2": 14,
    "kafka_3": 15,
    "kafka_controller_3": 16,
    # /metrics of the long-lived processes
    "metrics_market_producer": 20,
    "metrics_tick_ingestor": 21,
    "metrics_feature_calculator": 22,
    "metrics_trading_bot": 23,
    "metrics_worker": 24,
    "metrics_exchange": 25,
    "metrics_beat": 27,
    "metrics_kafka": 26,
    "metrics_kafka_2": 28,
    "metrics_kafka_3": 29,
    # exporters of the stack services (hft/devstack/exporters.py): PostgreSQL, Redis, and the
    # bridge that receives Airflow's OpenTelemetry metrics and serves them to Prometheus
    "metrics_postgres": 30,
    "metrics_redis": 31,
    "metrics_airflow": 32,
}


class Settings(BaseSettings):
    """Every setting of the system; `.env.example` documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="HFT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- where state lives, how services bind ---------------------------------------------
    home: Path = Field(default=Path(".hft"), description="Directory of the embedded stack's state")
    port_base: int = Field(default=15400, description="First port of the embedded stack")
    bind_host: str = Field(default="127.0.0.1", description="Address every service binds to")
    log_level: str = "INFO"

    # --- PostgreSQL / TimescaleDB -----------------------------------------------------------
    postgres_url: str | None = Field(
        default=None, description="SQLAlchemy URL of an external market database; embedded when unset"
    )
    postgres_user: str = "postgres"
    postgres_password: SecretStr = Field(
        default=SecretStr(""),
        description="The embedded PostgreSQL's password (generated into HFT_HOME when unset)",
    )
    postgres_db: str = "hft"
    timescale: bool = Field(default=False, description="Run TimescaleDB (PostgreSQL 17 in a trixie root)")
    timescale_root: Path | None = Field(default=None, description="debootstrap root for TimescaleDB")

    # --- Redis ------------------------------------------------------------------------------
    redis_url: str | None = Field(default=None, description="External Redis; embedded when unset")
    redis_password: SecretStr = Field(
        default=SecretStr(""), description="The embedded Redis' password (generated into HFT_HOME when unset)"
    )

    # --- the process supervisor ---------------------------------------------------------------
    supervisor_user: str = Field(default="hft", description="Login of supervisord's web UI and XML-RPC")
    supervisor_password: SecretStr = Field(
        default=SecretStr(""), description="Its password (generated into HFT_HOME when unset)"
    )

    # --- Kafka ------------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None, description="External Kafka bootstrap servers; the embedded Apache Kafka when unset"
    )
    kafka_brokers: int = Field(
        default=1,
        description="Nodes of the embedded KRaft cluster: 1, or 3 (replication 3, min.insync.replicas 2)",
    )
    kafka_partitions: int = Field(
        default=4, ge=1, description="Partitions of the ticks topic (created by the stack)"
    )
    kafka_retention_hours: float = Field(
        default=72.0, gt=0, description="How long the ticks topic keeps messages"
    )
    kafka_heap_mb: int = Field(default=768, ge=256, description="JVM heap of each embedded Kafka node")
    topic_ticks: str = "market_ticks"
    topic_dlq: str = "market_ticks.dlq"
    kafka_linger_ms: float = Field(
        default=0.0, ge=0, description="Market producer linger: 0 sends each tick at once (latency first)"
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="none",
        description="Producer batch compression (none: ticks are ~100 bytes and latency comes first)",
    )
    kafka_fetch_wait_ms: int = Field(
        default=5,
        ge=0,
        description="Longest a consumer fetch waits at the broker for data (latency vs. requests)",
    )

    ingest_batch_max: int = Field(
        default=5000, ge=1, description="Tick ingestor: most ticks per batch (one transaction)"
    )
    ingest_linger_ms: int = Field(
        default=50,
        ge=0,
        description="Tick ingestor: how long a batch waits to fill (throughput over latency)",
    )

    # --- MLflow / Optuna --------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(default=None, description="External MLflow; embedded when unset")
    mlflow_username: str = Field(
        default="hft", description="MLflow login (the embedded server's admin; sent by every client)"
    )
    mlflow_password: SecretStr = Field(
        default=SecretStr(""),
        description="Its password (generated into HFT_HOME when unset; for an external MLflow: its login, if any)",
    )
    mlflow_reader_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of the read-only MLflow login <mlflow_username>-reader (the dashboard's)",
    )
    model_name: str = "hft-ensemble"
    optuna_storage: str | None = Field(default=None, description="Optuna RDB URL; local Postgres when unset")

    # --- market -----------------------------------------------------------------------------
    market: Literal["binance", "replay"] = Field(
        default="binance", description="Live Binance, or the local replay exchange on ../shared/data"
    )
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    binance_ws_url: str = "wss://stream.binance.com:9443"
    binance_rest_url: str = "https://api.binance.com"
    archive_url: str = Field(default="https://data.binance.vision", description="https:// or file:// base")
    data_dir: Path = Field(
        default=REPO_ROOT.parent / "shared" / "data" / "binance",
        description="Recorded Binance data used by the replay exchange and the demo's history",
    )
    replay_speed: str = Field(
        default="x10",
        description="x1 (real time), xN or max; the demo replays ten times faster so a 15m bar closes every 90 s",
    )
    replay_loop: bool = Field(default=True, description="Repeat the recording with shifted ids and times")

    # --- features / models ------------------------------------------------------------------
    bar_interval: str = "15m"
    feature_spec: str = Field(
        default="bar_features_ohlcv_v1",
        description="Feature spec (hft.features.spec.SPECS) a new model trains on; bar_features_ohlcv_v2 "
        "computes from bars (--data CSV), the store holds v1 only",
    )
    label_horizon: int = Field(
        default=1,
        ge=1,
        description="Bars a model's label looks ahead and its trades are held (hft train --horizon); "
        "1: the tuned pipeline at 4 bars served constant members on its last window (docs/ml.md)",
    )
    train_start: str = "2023-01-01"
    train_end: str = "2025-08-31"
    train_budget_minutes: float = 3.0
    label_dead_zone_bps: float = Field(
        default=0.0, description="Moves smaller than this get no label (0: none)"
    )
    promotion_margin_auc: float = Field(
        default=0.002,
        description="ROC-AUC points a challenger must win by (vs champion, or baselines when none)",
    )

    # --- the dashboard's login (its controls: the kill switch) ------------------------------
    dashboard_user: str = Field(default="hft", description="Login for the dashboard's controls (kill switch)")
    dashboard_password: SecretStr = Field(
        default=SecretStr(""), description="Its password (generated into HFT_HOME when unset)"
    )

    # --- serving / trading ------------------------------------------------------------------
    api_key: SecretStr | None = Field(default=None, description="Key for mutating endpoints")
    api_url: str | None = Field(default=None, description="Model server URL for the bot; local when unset")
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="uvicorn workers of the model server behind its one port (hft up); they share Redis "
        "and the registry only",
    )
    api_fast_path: bool = Field(
        default=True,
        description="POST /predict for a row already scored is answered without FastAPI's per-request "
        "work (api/fast.py); anything else goes to the route",
    )
    api_max_body_bytes: int = Field(
        default=2_097_152,
        ge=1,
        description="Largest API request body in bytes; larger ones get 413 (a full /predict/batch is ~0.9 MB)",
    )
    buy_threshold: float = 0.55
    sell_threshold: float = 0.45
    taker_fee_bps: float = 10.0
    maker_fee_bps: float = 10.0
    slippage_bps: float = 1.0
    order_latency_ms: float = 50.0
    order_notional: float = 1000.0
    max_position_notional: float = 5000.0
    cooldown_s: float = 60.0
    daily_loss_limit: float = 500.0
    starting_cash: float = 100_000.0
    model_poll_s: float = Field(
        default=5.0, description="How often the API checks whether the champion alias moved"
    )
    api_predict_ahead: bool = Field(
        default=True,
        description="The API scores each closed bar when it is announced, before anyone asks for it, "
        "and announces the score on hft:bars:scored, where the trading bot reads it",
    )
    shadow_record: bool = Field(
        default=True,
        description="The API writes each closed bar's champion score (and challenger score) to "
        "trading.shadow_predictions: the live record hft shadow and promotion read",
    )
    shadow_challenger: bool = Field(
        default=True,
        description="The API loads the model holding the challenger alias and scores every bar with it",
    )
    shadow_min_decisions: int = Field(
        default=0,
        ge=0,
        description="Promotion over a champion waits for this many live (shadow) decisions of the challenger "
        "and needs them no worse than the champion's on the same bars; 0: the walk-forward gate alone",
    )
    shadow_auc_tolerance: float = Field(
        default=0.0,
        ge=0,
        description="Live ROC-AUC points the challenger may trail the champion by on the shared bars "
        "(a few dozen bars make AUC noisy); its paper PnL still must be no worse",
    )
    bot_score_wait_ms: float = Field(
        default=250.0,
        ge=0,
        description="With api_predict_ahead: how long the bot waits for the API's score of a closed bar "
        "before it asks POST /predict itself",
    )
    fill_max_wait_s: float = Field(
        default=30.0, description="How long a fill waits for the next trade before taking the last one"
    )
    pnl_report_every_s: float = Field(default=300.0, description="Period of the reports.pnl beat task")

    # --- dashboard / observability ----------------------------------------------------------
    prometheus_url: str | None = Field(default=None, description="External Prometheus; embedded when unset")
    mlflow_public_url: str | None = Field(
        default=None, description="MLflow URL for the dashboard's links (browser side); mlflow_uri when unset"
    )
    dashboard_refresh_s: float = Field(default=5.0, description="Dashboard live-refresh period in seconds")

    # --- Airflow ----------------------------------------------------------------------------
    airflow_admin_user: str = "admin"
    airflow_enabled: bool = Field(default=True, description="Run Airflow (standalone) under `hft up`")
    retrain_schedule: str = "@weekly"

    # --- data quality (Great Expectations, drift) -------------------------------------------
    exchange_halts: list[str] = Field(
        default_factory=lambda: ["2023-03-24T12:45:00Z/2023-03-24T14:00:00Z"],
        description="Known exchange halts, 'start/end' in ISO UTC: bars inside are not expected",
    )
    psi_threshold: float = Field(default=0.25, description="PSI above which a feature counts as drifted")
    drift_window_days: int = Field(
        default=7, description="Trailing window compared with the training reference"
    )
    drift_retrain_threshold: float = Field(
        default=0.5,
        description="PSI of a feature above which backfill_features emits the asset features_drifted, "
        "which starts retrain_models outside its schedule; set it very high to switch the trigger off",
    )

    @model_validator(mode="before")
    @classmethod
    def _embedded_credentials(cls, data: Any) -> Any:
        """Fill the embedded services' passwords that were not given from ``credentials.json``."""
        if not isinstance(data, dict):
            return data
        # a key given, even empty, is the user's choice; a service named by URL brings its own
        missing = [k for k, url in GENERATED_SECRETS.items() if k not in data and not (url and data.get(url))]
        if not missing:
            return data
        creds = load_credentials(Path(data.get("home") or ".hft"))
        return {**data, **{k: creds[k] for k in missing}}

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three(cls, n: int) -> int:
        if n not in (1, 3):
            raise ValueError("the embedded Kafka runs 1 node or a cluster of 3")
        return n

    def port(self, name: str) -> int:
        """Return the port of a stack part or process, derived from ``port_base``."""
        return self.port_base + PORT_OFFSETS[name]

    @property
    def home_dir(self) -> Path:
        """Absolute state directory."""
        return self.home if self.home.is_absolute() else (Path.cwd() / self.home).resolve()

    def database_url(self, db: str | None = None, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of a database on the configured (or embedded) PostgreSQL."""
        if self.postgres_url and db is None:
            return self.postgres_url
        pw = self.postgres_password.get_secret_value()
        auth = f"{self.postgres_user}:{pw}@" if pw else f"{self.postgres_user}@"
        host = f"{self.bind_host}:{self.port('postgres')}"
        if self.postgres_url:
            # same server as the external URL, other database
            from sqlalchemy.engine import make_url

            return make_url(self.postgres_url).set(database=db).render_as_string(hide_password=False)
        return f"{driver}://{auth}{host}/{db or self.postgres_db}"

    @property
    def redis_dsn(self) -> str:
        """Redis URL (external or embedded)."""
        if self.redis_url:
            return self.redis_url
        pw = self.redis_password.get_secret_value()
        return f"redis://{':' + pw + '@' if pw else ''}{self.bind_host}:{self.port('redis')}/0"

    @property
    def mlflow_uri(self) -> str:
        """MLflow tracking URI (external or embedded)."""
        return self.mlflow_tracking_uri or f"http://{self.bind_host}:{self.port('mlflow')}"

    def mlflow_client_env(self) -> dict[str, str]:
        """The environment MLflow's client reads its login from (empty without a password)."""
        pw = self.mlflow_password.get_secret_value()
        if not pw:
            return {}
        return {"MLFLOW_TRACKING_USERNAME": self.mlflow_username, "MLFLOW_TRACKING_PASSWORD": pw}

    def mlflow_auth(self, read_only: bool = False) -> tuple[str, str] | None:
        """(user, password) for MLflow's REST API, or None when it needs no login. ``read_only``:
        the reader's login when there is one (it reads everything and changes nothing it did not make)."""
        reader = self.mlflow_reader_password.get_secret_value()
        if read_only and reader:
            return f"{self.mlflow_username}-reader", reader
        pw = self.mlflow_password.get_secret_value()
        return (self.mlflow_username, pw) if pw else None

    @property
    def optuna_url(self) -> str:
        """Optuna storage URL."""
        return self.optuna_storage or self.database_url("optuna", driver="postgresql+psycopg2")

    @property
    def api_base_url(self) -> str:
        """Model server base URL."""
        return self.api_url or f"http://{self.bind_host}:{self.port('api')}"

    def kafka_port(self, node_id: int = 1) -> int:
        """Client port of an embedded Kafka node (1-3)."""
        return self.port("kafka" if node_id == 1 else f"kafka_{node_id}")

    def kafka_controller_port(self, node_id: int = 1) -> int:
        """KRaft controller port of an embedded Kafka node (1-3)."""
        return self.port("kafka_controller" if node_id == 1 else f"kafka_controller_{node_id}")

    def kafka_metrics_port(self, node_id: int = 1) -> int:
        """/metrics (Prometheus' JMX exporter) of an embedded Kafka node (1-3)."""
        return self.port("metrics_kafka" if node_id == 1 else f"metrics_kafka_{node_id}")

    def kafka_replication(self) -> int:
        """Replication factor of the topics: 3 on a cluster of three or more, else 1."""
        if self.kafka_bootstrap:
            return 3 if len(self.kafka_bootstrap.split(",")) >= 3 else 1
        return min(3, self.kafka_brokers)

    def kafka_bootstrap_servers(self) -> str:
        """Bootstrap servers: the configured ones, or every node of the embedded cluster."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"{self.bind_host}:{self.kafka_port(i)}" for i in range(1, self.kafka_brokers + 1))


def use_mlflow(settings: Settings) -> str:
    """Give this process's MLflow clients the login of ``settings`` (MLflow's client reads it from
    the environment on every request) and return the tracking URI to use."""
    os.environ.update(settings.mlflow_client_env())
    return settings.mlflow_uri


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide Settings, built on first use."""
    return Settings()
