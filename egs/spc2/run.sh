#!/usr/bin/env bash
# Speech Commands V2 (35 words): fine-tune from AudioSet pre-training (../audioset/exp) or an imported
# checkpoint (--pretrained exp/imported/model.pt), score on the official test list.
set -euo pipefail

./audiossl.sh \
    --nj 16 \
    --ngpu auto \
    --train-set train \
    --valid-set valid \
    --test-sets "test" \
    --pretrain-models "" \
    --pretrain-exp ../audioset/exp \
    --finetune-models "beats eat" \
    --finetune-config "conf/finetune_{model}.yaml" \
    "$@"
