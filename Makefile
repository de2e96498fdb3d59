# audiossl: `make test` builds tools/venv when needed, then runs the whole test suite.
SHELL := /bin/bash
PY := tools/venv/bin/python

.PHONY: all venv test bench shellcheck clean

all: venv

venv:
	tools/install.sh

test: venv
	$(PY) -m pytest -ra --durations=15 --timeout=900 test

bench: venv
	$(PY) -m audiossl.bin.benchmark

shellcheck:
	shellcheck -x utils/*.sh egs/TEMPLATE/*.sh egs/*/run.sh egs/*/local/*.sh

clean:
	rm -rf tools/venv
