# The two commands: `make demo` (run the system) and `make test` (run the tests).
# Both set up what they need first: the venv from requirements/lock.txt and, as root, the
# Debian packages (redis-server, prometheus, chromium, kcat).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
KAFKA_CP := deploy/kafka/target/classpath.txt
APT_PACKAGES := postgresql redis-server prometheus prometheus-postgres-exporter prometheus-redis-exporter \
	chromium kcat wrk openjdk-17-jre-headless maven
NAME ?=
MINUTES ?= 60
PYTEST_ARGS ?=

.PHONY: setup system-packages demo test test-unit test-integration test-e2e test-timescale lint bench soak proto down clean

$(BIN)/.installed: requirements/lock.txt pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

# Apache Kafka's jars (the embedded broker) from Maven Central, pinned in deploy/kafka/pom.xml
$(KAFKA_CP): deploy/kafka/pom.xml
	mvn -q -B -f deploy/kafka/pom.xml dependency:build-classpath -Dmdep.outputFile=$(CURDIR)/$(KAFKA_CP)

setup: system-packages $(BIN)/.installed $(KAFKA_CP) ## venv from the lock, Kafka's jars (+ Debian packages when root)

system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
			(apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); fi; \
	else echo "not root: install $(APT_PACKAGES) yourself if missing"; fi

demo: setup ## the stack, a first model when none is champion, the whole main job
	$(BIN)/hft demo

down:
	$(BIN)/hft down

test: setup ## unit + integration + e2e, starting what they need
	$(BIN)/pytest -q $(PYTEST_ARGS) tests

test-unit: setup
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/unit

test-security: setup ## the security suite alone (also part of make test)
	$(BIN)/pytest -q $(PYTEST_ARGS) tests/security

test-timescale: setup ## the storage tests again on TimescaleDB (PostgreSQL 17 in a trixie root; root needed)
	@command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null \
		|| (apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null)
	HFT_TIMESCALE=1 HFT_TEST_HOME=$(CURDIR)/.hft-test-timescale HFT_TEST_PORT_BASE=25500 \
		$(BIN)/pytest -q $(PYTEST_ARGS) tests/unit/storage tests/integration/storage

lint: setup
	$(BIN)/ruff check hft api workers streamers dashboard dags plugins tests bench
	$(BIN)/ruff check dags --select AIR
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup ## every benchmark (or NAME=...) -> bench/results/*.json, then the README table
	$(BIN)/python -m bench $(if $(NAME),--name $(NAME),)

soak: setup
	$(BIN)/python -m bench.soak --minutes $(MINUTES)

proto: setup
	$(BIN)/python -m grpc_tools.protoc -I hft/schema --python_out=hft/schema --pyi_out=hft/schema hft/schema/market.proto

clean:
	-$(BIN)/hft down
	rm -rf .hft .hft-test
