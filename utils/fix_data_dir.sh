#!/usr/bin/env bash
# Make a data directory consistent in place: sort every file (LC_ALL=C, by key), drop blank or
# value-less lines and repeated keys (the first line of a key wins), and keep only the utterances
# present in every per-utterance file (segments, feats.scp, utt2*, and wav.scp when there is no
# segments file) whose segment, if any, names a recording in wav.scp. With segments, wav.scp and
# reco2* then keep only the recordings the kept segments use. The originals are copied to
# <data>/.backup first, and the script reports "kept X of Y utterances" (Y: every utterance any
# per-utterance file names) and which file lacked how many.
set -euo pipefail
export LC_ALL=C

help_message=$(cat <<EOF
Usage: $0 <data-dir>
e.g.: $0 data/train
EOF
)
# shellcheck source=SCRIPTDIR/parse_options.sh
. "$(dirname "$0")/parse_options.sh"

if [ $# -ne 1 ]; then
    printf '%s\n' "${help_message}" >&2
    exit 1
fi
data=$1
utils=$(dirname "$0")
if [ ! -d "${data}" ]; then
    echo "$0: ${data} is not a directory; give a data directory" >&2
    exit 1
fi

utt_files=()
reco_files=()
for path in "${data}"/segments "${data}"/wav.scp "${data}"/feats.scp "${data}"/utt2* "${data}"/reco2*; do
    [ -f "${path}" ] || continue
    name=${path##*/}
    if [ -f "${data}/segments" ] && [[ ${name} =~ ^(wav\.scp|reco2[A-Za-z0-9_]+)$ ]]; then
        reco_files+=("${name}")
    elif [[ ${name} =~ ^(segments|wav\.scp|feats\.scp|utt2[A-Za-z0-9_]+)$ ]]; then
        utt_files+=("${name}")
    fi
done
if [ ${#utt_files[@]} -eq 0 ]; then
    echo "$0: ${data} has none of segments, wav.scp, feats.scp, utt2*; is it a data directory?" >&2
    exit 1
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "${tmpdir}"' EXIT
mkdir "${tmpdir}/sorted"

# 1. Sorted, unique, well-formed copies (segments need 4 fields, everything else a key and a value).
for name in "${utt_files[@]}" ${reco_files[@]+"${reco_files[@]}"}; do
    min_fields=2
    if [ "${name}" = segments ]; then
        min_fields=4
    fi
    awk -v m="${min_fields}" 'NF >= m' "${data}/${name}" | sort -s -k1,1 -u > "${tmpdir}/sorted/${name}"
done

# 2. Utterances in every per-utterance file (and, for segments, whose recording is known).
for name in "${utt_files[@]}"; do
    awk 'NF > 0 { print $1 }' "${data}/${name}"
done | sort -u > "${tmpdir}/all"
cp "${tmpdir}/all" "${tmpdir}/kept"
report=()
for name in "${utt_files[@]}"; do
    "${utils}/filter_scp.pl" "${tmpdir}/sorted/${name}" "${tmpdir}/kept" > "${tmpdir}/kept.new"
    mv "${tmpdir}/kept.new" "${tmpdir}/kept"
    lacking=$("${utils}/filter_scp.pl" --exclude "${tmpdir}/sorted/${name}" "${tmpdir}/all" | wc -l)
    if [ "${lacking}" -gt 0 ]; then
        report+=("${lacking} not in ${name}")
    fi
done
if [ -f "${tmpdir}/sorted/segments" ]; then
    for name in "${reco_files[@]}"; do
        "${utils}/filter_scp.pl" -f 2 "${tmpdir}/sorted/${name}" "${tmpdir}/sorted/segments" > "${tmpdir}/segs"
        "${utils}/filter_scp.pl" "${tmpdir}/segs" "${tmpdir}/kept" > "${tmpdir}/kept.new"
        lost=$(( $(wc -l < "${tmpdir}/kept") - $(wc -l < "${tmpdir}/kept.new") ))
        mv "${tmpdir}/kept.new" "${tmpdir}/kept"
        if [ "${lost}" -gt 0 ]; then
            report+=("${lost} segments of recordings not in ${name}")
        fi
    done
fi
total=$(wc -l < "${tmpdir}/all")
kept=$(wc -l < "${tmpdir}/kept")
if [ "${kept}" -eq 0 ]; then
    echo "$0: no utterance of ${data} is in every one of: ${utt_files[*]}; check that their keys match (nothing changed)" >&2
    exit 1
fi

# 3. Filter, back up, replace.
for name in labels.txt stats.json; do
    if [ -f "${data}/${name}" ]; then
        cp "${data}/${name}" "${tmpdir}/sorted/${name}"
    fi
done
"${utils}/subset_data_dir.sh" --utt-list "${tmpdir}/kept" "${tmpdir}/sorted" "${tmpdir}/fixed" 2> "${tmpdir}/log" \
    || { cat "${tmpdir}/log" >&2; exit 1; }
mkdir -p "${data}/.backup"
for name in "${utt_files[@]}" ${reco_files[@]+"${reco_files[@]}"}; do
    cp "${data}/${name}" "${data}/.backup/${name}"
    cp "${tmpdir}/fixed/${name}" "${data}/${name}"
done

details=""
if [ ${#report[@]} -gt 0 ]; then
    details=" ($(printf '%s, ' "${report[@]}" | sed 's/, $//'))"
fi
echo "$0: kept ${kept} of ${total} utterances in ${data}${details}; originals in ${data}/.backup" >&2
