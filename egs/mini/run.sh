#!/usr/bin/env bash
# Mini recipe: every stage of the toolkit on a small synthetic corpus (5 sound classes, 280 clips of
# 1.5 s), on CPU in minutes. Options after run.sh override these, e.g. ./run.sh --stage 3.
set -euo pipefail

./audiossl.sh \
    --nj 2 \
    --train-set train \
    --valid-set dev \
    --test-sets "test" \
    --pretrain-models "beats eat" \
    --beats-rounds 2 \
    --finetune-models "beats eat" \
    --finetune-init "pretrained random" \
    "$@"
