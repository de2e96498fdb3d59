#!/usr/bin/env bash
# AudioSet: pre-train BEATs and EAT on AS-2M, fine-tune on AS-20K, score on the eval set.
# README.md says what to download and where; stage 1 indexes it (see local/data.sh --help).
# For AS-2M fine-tuning: --train-set train_as2m --finetune-config conf/finetune_as2m_{model}.yaml
# Stage 2 dumps the audio once, as 16-bit FLAC for both models (about 390 GB for AS-2M, a fifth of
# two fbank dumps; README "Performance"); the fbank is computed as the clips are read. On a network
# file system add --pretrain-args "--data.reading sequential" (each loader worker reads its own ark
# shards front to back); --pretrain-args "--data.frontend device" moves the fbank to the GPUs.
set -euo pipefail

./audiossl.sh \
    --nj 32 \
    --feats-type raw \
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
