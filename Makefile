# `make test` is the whole test suite (what CI runs); `make test-fast` the quick tiers; `make bench` the benchmarks.
PY ?= python3
# binary:Debian package for every program the tests drive for real; only the missing ones are installed
# (a kubectl from another package satisfies kubernetes-client)
APT_NEEDS = promtool:prometheus prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager \
	amtool:prometheus-alertmanager prometheus-blackbox-exporter:prometheus-blackbox-exporter \
	chromium:chromium chromedriver:chromium-driver nginx:nginx-light tinyproxy:tinyproxy \
	kubectl:kubernetes-client wrk:wrk systemd-analyze:systemd squid:squid node:nodejs curl:curl danted:dante-server

.PHONY: deps test test-fast lint bench run mixin

deps:
	@missing=""; for need in $(APT_NEEDS); do \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $${need%%:*} >/dev/null 2>&1 || missing="$$missing $${need#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  pkgs=$$(printf '%s\n' $$missing | sort -u | tr '\n' ' '); \
	  echo "installing Debian packages: $$pkgs"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs) >/dev/null \
	    || { echo "error: apt-get install $$pkgs failed (the tests drive these for real)" >&2; exit 1; }; \
	fi
	$(PY) -m pip install -q -e '.[test]'

lint:
	$(PY) -m ruff check exporter tests bench mixin deploy
	$(PY) -m mypy

test: deps lint
	$(PY) -m pytest -q

test-fast:
	$(PY) -m pytest -q -n 2 tests/unit tests/integration

bench: deps
	$(PY) -m bench

run:
	$(PY) -m exporter

# config/prometheus/*.yml, config/alertmanager/alertmanager.yml and dashboards/*.json from mixin/
mixin:
	$(PY) mixin/render.py

# the Prometheus Operator's PrometheusRule is rendered from config/prometheus/*.yml; re-run after changing them
.PHONY: deploy-rules
deploy-rules:
	$(PY) deploy/render_rules.py
