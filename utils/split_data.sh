#!/usr/bin/env bash
# Split a data directory into N parts for parallel jobs: <data>/split<N>/<n>/ for n = 1..N, each a
# consistent data directory (see subset_data_dir.sh --utt-list) holding a contiguous run of the
# sorted utterances, part sizes differing by at most one. With a segments file the utterances are
# the segments, and each part's wav.scp keeps only the recordings its segments use (a recording
# may then appear in two neighbouring parts). A split that is newer than every file of <data> is
# reused as it is.
set -euo pipefail
export LC_ALL=C

help_message=$(cat <<EOF
Usage: $0 <data-dir> <num-parts>
e.g.: $0 data/train 8     # -> data/train/split8/{1..8}/
EOF
)
# shellcheck source=SCRIPTDIR/parse_options.sh
. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 2 ]; then
    printf '%s\n' "${help_message}" >&2
    exit 1
fi
data=$1
num=$2
utils=$(dirname "$0")
if ! [[ ${num} =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: the number of parts must be a positive integer, got '${num}'" >&2
    exit 1
fi
index=""
for f in segments wav.scp feats.scp; do
    if [ -f "${data}/${f}" ]; then
        index=${data}/${f}
        break
    fi
done
if [ -z "${index}" ]; then
    echo "$0: ${data} has no segments, wav.scp or feats.scp; is it a data directory?" >&2
    exit 1
fi

out=${data}/split${num}
stamp=${out}/.done
if [ -f "${stamp}" ]; then
    up_to_date=true
    for path in "${data}"/*; do
        if [ -f "${path}" ] && [ "${path}" -nt "${stamp}" ]; then
            up_to_date=false
            break
        fi
    done
    for ((n = 1; n <= num; n++)); do
        [ -d "${out}/${n}" ] || up_to_date=false
    done
    if ${up_to_date}; then
        echo "$0: ${out} is newer than every file of ${data}; reusing it" >&2
        exit 0
    fi
fi

total=$(awk 'NF > 0' "${index}" | wc -l)
if [ "${num}" -gt "${total}" ]; then
    echo "$0: ${data} has ${total} utterances, fewer than ${num} parts; use at most ${total} parts" >&2
    exit 1
fi

tmpdir=$(mktemp -d "${data}/.split${num}.XXXXXX")
trap 'rm -rf "${tmpdir}"' EXIT
awk 'NF > 0 { print $1 }' "${index}" > "${tmpdir}/utts"
lists=()
for ((n = 1; n <= num; n++)); do
    lists+=("${tmpdir}/utts.${n}")
done
"${utils}/split_scp.pl" "${tmpdir}/utts" "${lists[@]}"
for ((n = 1; n <= num; n++)); do
    "${utils}/subset_data_dir.sh" --utt-list "${tmpdir}/utts.${n}" "${data}" "${tmpdir}/parts/${n}" 2> "${tmpdir}/log" \
        || { cat "${tmpdir}/log" >&2; exit 1; }
done
touch "${tmpdir}/parts/.done"
rm -rf "${out}"
mv "${tmpdir}/parts" "${out}"
echo "$0: split ${total} utterances of ${data} into ${out}/{1..${num}}" >&2
