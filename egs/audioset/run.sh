#!/usr/bin/env bash
# AudioSet: pre-train BEATs and EAT on AS-2M, fine-tune on AS-20K, score on the eval set.
# README.md says what to download and where; stage 1 indexes it (see local/data.sh --help).
# For AS-2M fine-tuning: --train-set train_as2m --finetune-config conf/finetune_as2m_{model}.yaml
set -euo pipefail

./audiossl.sh \
    --nj 32 \
    --ngpu auto \
    --pretrain-set train_as2m \
    --train-set balanced_train \
    --valid-set eval \
    --test-sets "eval" \
    --pretrain-models "beats eat" \
    --beats-rounds 3 \
    --finetune-models "beats eat" \
    --finetune-config "conf/finetune_as20k_{model}.yaml" \
    "$@"
