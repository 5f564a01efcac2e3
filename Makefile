# `make test` is the whole test suite (what CI runs); `make test-fast` the quick tiers; `make bench` the benchmarks.
# The Python side runs in its own virtual environment, .venv-test: `make test` makes it afresh each time and
# installs the exporter with its [test] extra into it, so the suite runs on the newest release of every
# dependency that a user's `pip install` would get, not on whatever the machine's Python happens to hold.
PY ?= python3
VENV ?= .venv-test
VPY = $(VENV)/bin/python
# written once the install succeeded (bin/python is a symlink to an old binary: its time says nothing)
VSTAMP = $(VENV)/installed
# the venv's scripts (apistatus-exporter, hadolint, ...) first on the PATH of everything run from here
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Bytecode is cached even where the environment says not to (some machines set PYTHONDONTWRITEBYTECODE):
# the suite starts the exporter in many child interpreters, and pytest rewrites every test module in each
# worker; without the cache each of them compiles its modules from source again.
unexport PYTHONDONTWRITEBYTECODE
# binary:Debian package for every program the tests drive for real; only the missing ones are installed
# (a kubectl from another package satisfies kubernetes-client)
APT_NEEDS = promtool:prometheus prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
	amtool:prometheus-alertmanager prometheus-blackbox-exporter:prometheus-blackbox-exporter \
	chromium:chromium chromedriver:chromium-driver nginx:nginx-light tinyproxy:tinyproxy \
	kubectl:kubernetes-client wrk:wrk systemd-analyze:systemd squid:squid node:nodejs curl:curl danted:dante-server

.PHONY: deps apt-deps venv fresh-venv test test-fast lint bench run mixin

# Debian packages and the venv, as it is if it is there (`make test` starts from a fresh one)
deps: apt-deps venv

apt-deps:
	@missing=""; for need in $(APT_NEEDS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $${need%%:*} >/dev/null 2>&1 || missing="$$missing $${need#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' '); \
	  echo "installing Debian packages: $$pkgs"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs) >/dev/null \
	    || { echo "error: apt-get install $$pkgs failed (the tests drive these for real)" >&2; exit 1; }; \
	fi

# made when missing, and again when pyproject.toml changes
$(VSTAMP): pyproject.toml
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]' \
	  || { rm -rf $(VENV); echo "error: pip install -e '.[test]' into $(VENV) failed" >&2; exit 1; }
	@$(VPY) -m pip list --format=freeze | grep -i -E '^(aiohttp|pycurl|prometheus.client|pyyaml|bcrypt|isal|google.re2|pytest)==' | tr '\n' ' '; echo
	touch $(VSTAMP)

venv: $(VSTAMP)

fresh-venv:
	rm -rf $(VENV)
	$(MAKE) --no-print-directory venv

lint: venv
	$(VPY) -m ruff check exporter tests bench mixin deploy
	$(VPY) -m mypy

# the whole suite, in a fresh venv; --durations lists the slowest tests, so the next slow one is seen
test: apt-deps fresh-venv lint
	$(VPY) -m pytest -q --durations=15

# unit and integration (no Prometheus, browser or fleet), on both cores; the goal is under a minute (docs/development.md)
test-fast: venv
	# four workers on two cores: many integration tests wait on loopback servers and timers, and the
	# waits of one worker overlap another's work
	# --dist worksteal: each worker starts on its own run of consecutive tests, so a module's fixtures (keys,
	# servers, the recorded demo walk) are mostly made once, and an idle worker takes tests from a busy one
	$(VPY) -m pytest -q -n 4 --dist worksteal --durations=10 tests/unit tests/integration

bench: deps
	$(VPY) -m bench

run: venv
	$(VPY) -m exporter

# config/prometheus/*.yml, config/alertmanager/alertmanager.yml and dashboards/*.json from mixin/
mixin: venv
	$(VPY) mixin/render.py

# the Prometheus Operator's PrometheusRule is rendered from config/prometheus/*.yml; re-run after changing them
.PHONY: deploy-rules
deploy-rules: venv
	$(VPY) deploy/render_rules.py
