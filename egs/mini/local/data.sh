#!/usr/bin/env bash
# Data preparation for the mini recipe: synthesise the corpus (once), then write the Kaldi data dirs
# data/{train,dev,test} with wav.scp, utt2label, utt2dur and labels.txt.
set -euo pipefail

corpus_dir=downloads/mini_corpus   # where the synthetic audio goes
num_train=40                       # clips per class in train
num_dev=8                          # clips per class in dev
num_test=8                         # clips per class in test
seed=1

help_message=$(cat <<EOF_HELP
Usage: $0 [--corpus-dir DIR] [--num-train N] [--num-dev N] [--num-test N] [--seed S]
e.g.: $0 --num-train 20
EOF_HELP
)
. utils/parse_options.sh
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi

python3 local/make_corpus.py --num-train "${num_train}" --num-dev "${num_dev}" \
    --num-test "${num_test}" --seed "${seed}" "${corpus_dir}"
python3 local/prepare_data.py "${corpus_dir}/meta.csv" data
