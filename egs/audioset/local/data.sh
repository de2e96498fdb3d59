#!/usr/bin/env bash
# Stage 1 of the AudioSet recipe: the official CSVs and the clips you fetched -> <data-dir>/<set>/
# (wav.scp, utt2label, utt2dur, labels.txt; missing.txt lists clips the CSVs name but you lack).
# The expected layout is in the recipe's README.md.
set -euo pipefail

audioset_root=downloads/audioset   # class_labels_indices.csv and the *_segments.csv files
audio_dir=""                       # your clips, any layout below it (empty: <audioset-root>/audio)
sets="balanced_train unbalanced_train train_as2m eval"  # spaces or commas; AS-20K only: balanced_train,eval
unknown_mids=error                 # a label not in class_labels_indices.csv: error or skip
nj=8                               # threads reading audio headers

help_message=$(cat <<EOF_HELP
Usage: $0 [options] [<data-dir>]
e.g.: $0 --audioset-root downloads/audioset --sets balanced_train,eval data

Options (defaults in brackets):
  --audioset-root DIR    class_labels_indices.csv and *_segments.csv [${audioset_root}]
  --audio-dir DIR        the clips, searched recursively; empty: <audioset-root>/audio [${audio_dir}]
  --sets "A B" or A,B    from balanced_train (AS-20K), unbalanced_train, train_as2m (AS-2M), eval [${sets}]
  --unknown-mids error|skip   labels not in class_labels_indices.csv [${unknown_mids}]
  --nj N                 threads reading audio headers [${nj}]
<data-dir> defaults to data.
EOF_HELP
)
. utils/parse_options.sh
if [ $# -gt 1 ]; then
    echo "${help_message}" >&2
    exit 1
fi
data=${1:-data}
sets=${sets//,/ }

audio_opts=()
[ -n "${audio_dir}" ] && audio_opts=(--audio-dir "${audio_dir}")
python3 -m audiossl.bin.prepare_audioset --audioset-root "${audioset_root}" ${audio_opts[@]+"${audio_opts[@]}"} \
    --sets "${sets}" --unknown-mids "${unknown_mids}" --nj "${nj}" "${data}"

if [ -x utils/validate_data_dir.sh ]; then
    for s in ${sets}; do
        utils/validate_data_dir.sh "${data}/${s}"
    done
fi
echo "$0: prepared ${sets} in ${data}"
