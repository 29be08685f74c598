# ostinato: the two set-up commands (make run, make test) and the tasks behind them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck pytest bench bench-operator clean k8s-binaries crds e2e e2e-kind prometheus chromium cluster-up cluster-down image-local soak soak-local

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ostinato run examples/pipeline.yaml --duration 10 --status-every 2.5

lint: $(STAMP)
	$(BIN)/ruff check runtime operator tests bench examples hack soak
	$(BIN)/ruff format --check runtime operator tests bench examples hack soak
	$(BIN)/mypy
	$(BIN)/lint-imports

# --durations=20: where the suite spends its time, in every CI log (the README's budget).
pytest: $(STAMP) k8s-binaries prometheus chromium
	$(BIN)/python -m pytest --durations=20

# A real Prometheus server for tests/observability (Debian's package). Installed when missing
# and root, its system service kept off: the tests start their own on loopback, or skip.
prometheus: $(STAMP)
	@if command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		$(BIN)/python -m hack.k8s apt-install prometheus || exit 1; \
		if command -v systemctl >/dev/null; then systemctl disable --now prometheus || true; fi; \
		if [ -x /etc/init.d/prometheus ]; then /etc/init.d/prometheus stop >/dev/null 2>&1 || true; fi; \
	else echo "prometheus not installed and not root: tests/observability/test_prometheus.py will skip"; fi

# A headless browser for tests/console (Debian's chromium and chromium-driver, which selenium
# drives). Installed when missing and root; elsewhere the console's browser tests skip.
chromium: $(STAMP)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		$(BIN)/python -m hack.k8s apt-install chromium chromium-driver || exit 1; \
	else echo "chromium or chromedriver not installed and not root: tests/console/test_browser.py will skip"; fi

# Kubernetes 1.20.2 binaries for the k8s tests: KUBEBUILDER_ASSETS, or built once (~5 min) from
# Debian's source into ~/.cache/ostinato; elsewhere it says what to set and the tests skip.
k8s-binaries: $(STAMP)
	$(BIN)/python -m hack.k8s binaries --best-effort

# The single-node cluster (containerd, CNI bridge, kubelet, kube-proxy, DNS) left running for
# the tests to reuse, and its teardown, which leaves the machine as it found it. Root on Debian.
cluster-up: $(STAMP) k8s-binaries
	$(BIN)/python -m hack.k8s cluster-up

cluster-down: $(STAMP)
	$(BIN)/python -m hack.k8s cluster-down

# localhost/ostinato:dev from the Dockerfile (buildah, on a debootstrap base) into containerd's
# k8s.io namespace; rebuilt only when its inputs changed.
image-local: $(STAMP)
	$(BIN)/python -m hack.k8s image-local

test: lint pytest

# A soak with chaos (docs/reliability.md), not part of `make test`: counted traffic for MINUTES on
# the project's single-node cluster while loop pods, the hub and the operator are killed; the
# report and its plot go to SOAK_OUT. Exit 1 when an acknowledged message was lost or memory grew
# past its goal. `make soak-local`: the same without a cluster (`ostinato run`, then distributed
# mode), 5 minutes by default.
SOAK_OUT ?= soak-report
soak: MINUTES ?= 30
soak: $(STAMP) k8s-binaries
	$(BIN)/python -m soak cluster --minutes $(MINUTES) --out $(SOAK_OUT)

soak-local: MINUTES ?= 5
soak-local: $(STAMP)
	$(BIN)/python -m soak local --minutes $(MINUTES) --out $(SOAK_OUT)

bench: $(STAMP)
	$(BIN)/python bench/node_overhead.py
	$(BIN)/python bench/queue_throughput.py
	$(BIN)/python bench/queue_latency.py
	$(BIN)/python bench/timing.py

bench-operator: $(STAMP)
	$(BIN)/python bench/operator_apply.py

# The CRD from the pydantic models; the chart ships a byte-identical copy (a test checks both).
crds: $(STAMP)
	$(BIN)/python -m ostinato_operator._crd > crds/workflows.ostinato.dev.yaml
	cp crds/workflows.ostinato.dev.yaml helm/ostinato/crds/workflows.ostinato.dev.yaml

# End to end on the project's single-node cluster (tests/e2e; part of `make test` too): the image,
# `helm install` of the chart, a Workflow across pods, pause/resume, a hub killed, delete.
e2e: $(STAMP) k8s-binaries
	$(BIN)/python -m pytest tests/e2e -v

# The same suite on a kind cluster where Docker and kind exist; says why and skips elsewhere.
e2e-kind: $(STAMP)
	PYTHON=$(BIN)/python hack/kind.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
