#!/usr/bin/env bash
# ESC-50 layout at CPU scale: pre-train BEATs (one round) and EAT in-domain on every clip (set
# "all": the audio of the test folds too, never their labels), fine-tune both per fold from their
# pre-training and from random weights (the from-scratch control), probe the frozen encoders, score
# the log-mel baseline, average the folds: the "Learning on a new corpus" table of the README.
# For an 800-clip corpus, e.g. the one that local/make_synth_corpus.py synthesises (about 22 minutes
# on 2 CPU cores with --folds 1, and about 11 more per further fold):
#   local/make_synth_corpus.py downloads/esc_synth
#   ./run_cpu.sh --local-data-opts "--esc50-root downloads/esc_synth"
set -euo pipefail

./audiossl.sh \
    --nj 2 \
    --ngpu 0 \
    --parallel-runs 2 \
    --folds "1 2 3 4 5" \
    --train-set "fold{fold}/train" \
    --valid-set "fold{fold}/test" \
    --test-sets "fold{fold}/test" \
    --pretrain-set all \
    --pretrain-models "beats eat" \
    --pretrain-exp exp \
    --beats-rounds 1 \
    --beats-tokenizer-r1-config conf/cpu/beats_tokenizer_r1.yaml \
    --beats-ssl-config conf/cpu/beats_ssl.yaml \
    --eat-pretrain-config conf/cpu/eat_pretrain.yaml \
    --finetune-models "beats eat" \
    --finetune-config "conf/cpu/finetune_{model}.yaml" \
    --finetune-init "pretrained random" \
    "$@"
