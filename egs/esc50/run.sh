#!/usr/bin/env bash
# ESC-50: 5-fold cross-validation fine-tuning from AudioSet pre-training (../audioset/exp) or an
# imported checkpoint (--pretrained exp/imported/model.pt); the score is the mean over the 5 folds.
set -euo pipefail

./audiossl.sh \
    --nj 8 \
    --ngpu auto \
    --folds "1 2 3 4 5" \
    --train-set "fold{fold}/train" \
    --valid-set "fold{fold}/test" \
    --test-sets "fold{fold}/test" \
    --pretrain-models "" \
    --pretrain-exp ../audioset/exp \
    --finetune-models "beats eat" \
    --finetune-config "conf/finetune_{model}.yaml" \
    "$@"
