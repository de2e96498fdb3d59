#!/usr/bin/env bash
# Stage 1 of the Speech Commands V2 recipe: the v0.02 tarball -> <data-dir>/{train,valid,test}
# (wav.scp, utt2label, utt2dur, labels.txt; split by validation_list.txt and testing_list.txt) and
# <data-dir>/background_noise (wav.scp, utt2dur) for augmentation. The layout is in the README.md.
set -euo pipefail

spc2_root=downloads/speech_commands_v0.02   # the unpacked tarball: word folders and the lists
nj=4                                        # threads reading audio headers

help_message=$(cat <<EOF_HELP
Usage: $0 [options] [<data-dir>]
e.g.: $0 --spc2-root downloads/speech_commands_v0.02 data

Options (defaults in brackets):
  --spc2-root DIR   the unpacked tarball: word folders, validation_list.txt, testing_list.txt [${spc2_root}]
  --nj N            threads reading audio headers [${nj}]
<data-dir> defaults to data.
EOF_HELP
)
. utils/parse_options.sh
if [ $# -gt 1 ]; then
    echo "${help_message}" >&2
    exit 1
fi
data=${1:-data}

python3 -m audiossl.bin.prepare_spc2 --spc2-root "${spc2_root}" --nj "${nj}" "${data}"

if [ -x utils/validate_data_dir.sh ]; then
    for s in train valid test; do
        utils/validate_data_dir.sh "${data}/${s}"
    done
    if [ -d "${data}/background_noise" ]; then
        utils/validate_data_dir.sh --no-labels "${data}/background_noise"
    fi
fi
echo "$0: prepared train, valid, test and background_noise in ${data}"
