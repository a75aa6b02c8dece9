# wasp's one-command workflow. `make help` lists the targets; `make test` does
# everything from a fresh clone: Python environment, redis-server, the
# control-plane binaries, then lint, types, import contracts and all tests.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
RUN := $(VENV)/bin
export UV_PYTHON := $(PYTHON)
# One pidfile per run: every server the tests start is recorded, and checked after.
PIDFILE := $(CURDIR)/.test-pids
# checkov, the Kubernetes scanner tests/chart/test_checkov.py runs: pinned with
# hashes in its own requirements (never in uv.lock), in a virtualenv of its own
# cached outside the repository per version of those requirements.
CHECKOV_REQUIREMENTS := tests/chart/checkov-requirements.txt
CHECKOV_VENV := $(or $(WASP_CACHE_DIR),$(HOME)/.cache/wasp)/checkov-$(shell sha256sum $(CHECKOV_REQUIREMENTS) | cut -c1-12)

.PHONY: help
help: ## List every target with what it does
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: uv
uv: ## Install uv (the lock's tool) into the machine's Python if missing
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'uv>=0.8'

.PHONY: venv
venv: uv ## Create .venv from uv.lock with every extra and the dev tools
	@$(UV) sync --frozen --all-extras --quiet

.PHONY: redis
redis: ## Install redis-server (Debian package) if it is not on PATH
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

.PHONY: faketime
faketime: ## Install libfaketime (Debian package faketime) for the clock-skew tests if missing
	@test -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 || { \
	  echo "installing faketime (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null; }

.PHONY: node-deps
node-deps: ## Install containerd, runc, CNI plugins and gcc (Debian packages) for the real node if missing
	@command -v containerd >/dev/null && command -v runc >/dev/null && command -v gcc >/dev/null \
	  && test -x /usr/lib/cni/loopback || { \
	  echo "installing containerd, runc, containernetworking-plugins, gcc (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    containerd runc containernetworking-plugins gcc >/dev/null; }

.PHONY: controlplane
controlplane: venv ## Find or build etcd, kube-apiserver, kube-controller-manager, kubectl, kube-scheduler, kubelet, helm (cached)
	@PYTHONPATH=tests $(RUN)/python -m harness.assets

.PHONY: checkov
checkov: uv ## Install checkov (hash-pinned, own cached virtualenv); print where it is
	@test -f $(CHECKOV_VENV)/.installed || { \
	  echo "installing checkov into $(CHECKOV_VENV)" >&2; \
	  rm -rf $(CHECKOV_VENV); \
	  $(UV) venv --quiet --python $(PYTHON) $(CHECKOV_VENV) && \
	  $(UV) pip install --quiet --python $(CHECKOV_VENV)/bin/python \
	    --require-hashes --only-binary :all: -r $(CHECKOV_REQUIREMENTS) && \
	  touch $(CHECKOV_VENV)/.installed; }
	@echo $(CHECKOV_VENV)/bin/checkov

.PHONY: docker
docker: ## Install Docker's engine (Debian's docker.io) and debootstrap if missing
	@command -v dockerd >/dev/null && command -v docker >/dev/null && command -v debootstrap >/dev/null || { \
	  echo "installing docker.io and debootstrap (Debian packages)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null; }

.PHONY: image
image: venv docker ## Build wasp's image (wasp:test) from the Dockerfile, bases made locally (cached; starts dockerd)
	@PYTHONPATH=tests $(RUN)/python -m harness.image

.PHONY: image-size
image-size: image ## Print the image's size, and what it would be per program
	@PYTHONPATH=tests $(RUN)/python -m harness.image --measure

.PHONY: demo
demo: venv redis node-deps controlplane image ## Run wasp locally (control plane, real node, Redis, chart), pair a sandbox tenant, send an OTP
	@PYTHONPATH=tests $(RUN)/python -m harness.demo up

.PHONY: demo-down
demo-down: venv ## Stop make demo and remove all it made (processes, mounts, cgroups, .demo/)
	@PYTHONPATH=tests $(RUN)/python -m harness.demo down

.PHONY: deps
deps: venv redis faketime node-deps controlplane checkov image ## Everything the tests need, installed or built

.PHONY: lint
lint: venv ## ruff check and ruff format --check
	$(RUN)/ruff check .
	$(RUN)/ruff format --check .

.PHONY: format
format: venv ## Rewrite files with ruff format and ruff's safe fixes
	$(RUN)/ruff format .
	$(RUN)/ruff check --fix .

.PHONY: types
types: venv ## mypy --strict on the packages, tests and benchmarks
	$(RUN)/mypy

.PHONY: contracts
contracts: venv ## import-linter: the layers the packages must keep
	$(RUN)/lint-imports

.PHONY: pytest
pytest: deps ## Run the tests (pass ARGS=... to pytest), then check no server is left alive
	@rm -f $(PIDFILE)
	WASP_TEST_PIDFILE=$(PIDFILE) $(RUN)/pytest $(ARGS)
	@PYTHONPATH=tests $(RUN)/python -m harness.leftovers $(PIDFILE)

.PHONY: test
test: deps lint types contracts pytest ## Everything: deps, lint, types, import contracts, all tests

.PHONY: chart-crds
chart-crds: ## Copy the CRDs from crds/ into the Helm chart (tests/chart checks they are identical)
	cp crds/whatsappsessions.wasp.dev.yaml crds/kopf-peering.yaml charts/wasp/crds/

.PHONY: clean
clean: ## Remove the virtualenv and caches in the repo (not the binary cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(PIDFILE)
