#!/usr/bin/env bash
# Speech Commands V2 layout at CPU scale: pre-train BEATs (one round) and EAT in-domain on the train
# set, fine-tune both from their pre-training and from random weights (the from-scratch control),
# probe the frozen encoders, score the log-mel baseline: the "Learning on a new corpus" table of the
# README. On 2 CPU cores about 33 minutes for a 2,100-clip corpus (pre-training is a fixed 1,000
# updates; fine-tuning is in epochs, so it grows with the corpus), e.g. the ones
# local/make_espeak_corpus.py synthesises:
#   local/make_espeak_corpus.py --language de --speakers 60 downloads/spc_espeak_de
#   ./run_cpu.sh --local-data-opts "--spc2-root downloads/spc_espeak_de"
set -euo pipefail

./audiossl.sh \
    --nj 2 \
    --ngpu 0 \
    --parallel-runs 2 \
    --train-set train \
    --valid-set valid \
    --test-sets "test" \
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
