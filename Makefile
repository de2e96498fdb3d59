# audiossl: `make test` builds tools/venv when needed, then runs the whole test suite.
SHELL := /bin/bash
PY := tools/venv/bin/python

.PHONY: all venv test bench learning-table shellcheck clean

all: venv

venv:
	tools/install.sh

test: venv
	$(PY) -m pytest -ra --durations=15 --timeout=900 test

bench: venv
	$(PY) -m audiossl.bin.benchmark

# The README's "Learning on a new corpus" table: two corpora made here that no CPU config was tuned on
# (German words; synthetic sounds, fold 1 of 5), each through its recipe's run_cpu.sh (in-domain
# pre-training, fine-tuning from it and from scratch, probes, baseline). About 57 minutes on 2 cores.
learning-table: venv
	cd egs/spc2 && ../../tools/venv/bin/python local/make_espeak_corpus.py --language de --speakers 60 downloads/spc_espeak_de \
		&& ./run_cpu.sh --local-data-opts "--spc2-root downloads/spc_espeak_de"
	cd egs/esc50 && ../../tools/venv/bin/python local/make_synth_corpus.py downloads/esc_synth \
		&& ./run_cpu.sh --local-data-opts "--esc50-root downloads/esc_synth" --folds 1

shellcheck:
	shellcheck -x utils/*.sh egs/TEMPLATE/*.sh egs/*/run.sh egs/*/run_cpu.sh egs/*/local/*.sh

clean:
	rm -rf tools/venv
