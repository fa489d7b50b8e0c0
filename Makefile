# fleetlink — every set-up step lives here, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
HOST   ?= 127.0.0.1
PORT   ?= 8080
# jsii warns on every run that Node 20 is past its end of life; the pinned CDK still runs on it.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.DEFAULT_GOAL := help
.PHONY: help run test lint fmt bench synth deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/$$(HOST)/$(HOST)/g' -e 's/$$(PORT)/$(PORT)/g' \
		| awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.created:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "fleetlink needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

# What `make run` needs: the package with the dev stack and the agent.
$(VENV)/.run: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e '.[local,agent]'
	touch $@

# What the tests need: everything, dev tools and the CDK library included.
$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run

# checkov (infra tests) in a virtualenv of its own: its pins (boto3, packaging) conflict with ours.
.venv-checkov/.installed:
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet "checkov==3.3.30"
	touch $@

# The CDK CLI, pinned in package.json / package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.run ## start the local control plane (moto) on http://$(HOST):$(PORT), data kept in .fleetlink/dev
	$(BIN)/fleetlink dev --host $(HOST) --port $(PORT)

test: $(VENV)/.dev node_modules/.installed .venv-checkov/.installed ## install what the tests need, check the import contracts, run the whole suite
	@test -x /usr/sbin/sshd || command -v sshd >/dev/null || { echo "installing openssh-server (tunnel relay tests)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
		$$SUDO apt-get install -y --no-install-recommends openssh-server; }
	@command -v chromium >/dev/null || { echo "installing chromium (the /v1/docs browser test)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && \
		$$SUDO apt-get install -y --no-install-recommends chromium; }
	$(BIN)/lint-imports
	@# the contract fuzz in a process of its own (schemathesis' generated cases do not spread over
	@# xdist workers), beside the rest of the suite on two workers; either failing (no test run
	@# included: pytest's exit code 5) fails the target, and the fuzz's output follows the suite's
	@mkdir -p build; \
	$(BIN)/pytest -p no:xdist tests/contract > build/contract-fuzz.log 2>&1 & fuzz=$$!; \
	$(BIN)/pytest -n 2 --dist loadfile --ignore=tests/contract; suite=$$?; \
	wait $$fuzz; fuzz_status=$$?; \
	echo "--- the contract fuzz (pytest -p no:xdist tests/contract), exit $$fuzz_status"; \
	cat build/contract-fuzz.log; \
	test $$suite -eq 0 && test $$fuzz_status -eq 0

lint: $(VENV)/.dev ## ruff, mypy and the import contracts (pyproject [tool.importlinter])
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(VENV)/.dev ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.dev ## run every benchmark in bench/ and print its figures
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

.PHONY: agent-dist
agent-dist: $(VENV)/.dev ## build the agent artifacts (linux x86_64, aarch64) into dist/agent, with their SHA-256 (VERSION=...)
	$(BIN)/python agentdist/build.py $(if $(VERSION),--version $(VERSION))

.PHONY: layers
layers: $(VENV)/.dev ## build the Lambda layers into layers/build (arm64 wheels, cached) and print their sizes
	$(BIN)/python layers/build.py

# Context goes through CDK_ARGS, e.g. make deploy CDK_ARGS="-c stage=prod -c alarm_email=ops@example.com"
synth: layers node_modules/.installed ## cdk synth into cdk.out: offline (no AWS call), cdk-nag checked
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk synth --quiet $(CDK_ARGS)

deploy: layers node_modules/.installed ## cdk deploy both stacks with your AWS credentials (CDK_ARGS="-c stage=...")
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install cdk deploy --all --outputs-file cdk.out/outputs.json $(CDK_ARGS)

clean: ## remove the venv, node_modules and build output
	rm -rf $(VENV) node_modules cdk.out layers/build .pytest_cache .mypy_cache .ruff_cache
