#!/usr/bin/env bash
# Stage 1 of the ESC-50 recipe: the official archive -> <data-dir>/fold<k>/{train,test} for k = 1..5
# (train: the other four folds, test: fold k) and <data-dir>/all, each with wav.scp, utt2label,
# utt2dur and labels.txt. The expected layout is in the recipe's README.md.
set -euo pipefail

esc50_root=downloads/ESC-50-master   # the unpacked archive: meta/esc50.csv and audio/
nj=4                                 # threads reading audio headers

help_message=$(cat <<EOF_HELP
Usage: $0 [options] [<data-dir>]
e.g.: $0 --esc50-root downloads/ESC-50-master data

Options (defaults in brackets):
  --esc50-root DIR   the unpacked archive, with meta/esc50.csv and audio/ [${esc50_root}]
  --nj N             threads reading audio headers [${nj}]
<data-dir> defaults to data.
EOF_HELP
)
. utils/parse_options.sh
if [ $# -gt 1 ]; then
    echo "${help_message}" >&2
    exit 1
fi
data=${1:-data}

python3 -m audiossl.bin.prepare_esc50 --esc50-root "${esc50_root}" --nj "${nj}" "${data}"

if [ -x utils/validate_data_dir.sh ]; then
    for d in "${data}/all" "${data}"/fold*/train "${data}"/fold*/test; do
        utils/validate_data_dir.sh "${d}"
    done
fi
echo "$0: prepared all and fold<k>/{train,test} in ${data}"
