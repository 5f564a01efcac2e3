# `make test` is the whole test suite (what CI runs); `make bench` the benchmarks.
PY ?= python3
APT_PKGS = prometheus prometheus-alertmanager prometheus-blackbox-exporter chromium chromium-driver nginx-light

.PHONY: deps test lint bench run

deps:
	@missing=""; for b in promtool prometheus prometheus-alertmanager amtool prometheus-blackbox-exporter chromium nginx; do \
	  command -v $$b >/dev/null 2>&1 || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $(APT_PKGS)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS)) >/dev/null \
	    || { echo "error: apt-get install $(APT_PKGS) failed (the tests drive these for real)" >&2; exit 1; }; fi
	$(PY) -m pip install -q -e '.[test]'

lint:
	$(PY) -m ruff check exporter tests bench
	$(PY) -m mypy

test: deps lint
	$(PY) -m pytest -q

bench: deps
	$(PY) -m bench

run:
	$(PY) -m exporter
