#!/usr/bin/env bash
# Combine data directories into one. Every source must have the same labels.txt (or none has one);
# utterance ids must not repeat across sources, unless --shared-ids true: then an utterance may be in
# several sources (ESC-50's fold sets, which share every clip) as long as each of its lines is the
# same in all of them, and it is kept once. A per-utterance file (feats.scp, utt2*, and
# wav.scp when no source has segments) is combined when every source has it, and skipped with a
# warning otherwise. When some sources have segments, the others get whole-recording segments
# ("<utt> <utt> 0 <duration>", from their utt2dur) and wav.scp becomes the recording list; a
# recording in several sources must have the same wav.scp line in each. Output files are sorted
# (LC_ALL=C).
set -euo pipefail
export LC_ALL=C

shared_ids=false   # true: an utterance may be in several sources if its lines agree; kept once

help_message=$(cat <<EOF
Usage: $0 [--shared-ids true|false] <dest-data-dir> <src-data-dir-1> [<src-data-dir-2> ...]
e.g.: $0 data/train_all data/train_balanced data/train_unbalanced
Options:
  --shared-ids <bool>   # true: sources may share utterances whose lines agree (default: ${shared_ids})
EOF
)
# shellcheck source=SCRIPTDIR/parse_options.sh
. "$(dirname "$0")/parse_options.sh"

if [ $# -lt 2 ]; then
    printf '%s\n' "${help_message}" >&2
    exit 1
fi
dest=$1
shift
srcs=("$@")

for src in "${srcs[@]}"; do
    if [ ! -f "${src}/wav.scp" ] && [ ! -f "${src}/feats.scp" ]; then
        echo "$0: ${src} has neither wav.scp nor feats.scp; is it a data directory?" >&2
        exit 1
    fi
    if [ -d "${dest}" ] && [ "$(cd "${src}" && pwd -P)" = "$(cd "${dest}" && pwd -P)" ]; then
        echo "$0: the destination ${dest} is also a source; write to a new directory" >&2
        exit 1
    fi
done

# labels.txt: all the same, or absent everywhere.
labels_from=""
for src in "${srcs[@]}"; do
    if [ -f "${src}/labels.txt" ]; then
        if [ -z "${labels_from}" ]; then
            labels_from=${src}
        elif ! cmp -s "${labels_from}/labels.txt" "${src}/labels.txt"; then
            echo "$0: ${labels_from}/labels.txt and ${src}/labels.txt differ; the sources must share one label set (same classes, same order)" >&2
            exit 1
        fi
    fi
done
if [ -n "${labels_from}" ]; then
    for src in "${srcs[@]}"; do
        if [ ! -f "${src}/labels.txt" ]; then
            echo "$0: ${labels_from} has labels.txt but ${src} has none; give every source the same labels.txt" >&2
            exit 1
        fi
    done
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "${tmpdir}"' EXIT

any_segments=false
for src in "${srcs[@]}"; do
    if [ -f "${src}/segments" ]; then
        any_segments=true
    fi
done

# The segments of every source (made up from utt2dur where a source has none).
if ${any_segments}; then
    for src in "${srcs[@]}"; do
        if [ -f "${src}/segments" ]; then
            cat "${src}/segments"
        elif [ -f "${src}/utt2dur" ]; then
            awk 'NF >= 2 { print $1, $1, 0, $2 }' "${src}/utt2dur"
        else
            echo "$0: ${src} has no segments and no utt2dur, so its utterances cannot be turned into segments like those of the other sources; run utils/fix_data_dir.sh after adding utt2dur" >&2
            exit 1
        fi
    done > "${tmpdir}/segments"
    if ${shared_ids}; then
        sort -u "${tmpdir}/segments" > "${tmpdir}/segments.uniq"
        mv "${tmpdir}/segments.uniq" "${tmpdir}/segments"
    fi
fi

# Per-utterance file names across the sources (wav.scp is per recording when segments are in play).
names=()
for src in "${srcs[@]}"; do
    for path in "${src}"/wav.scp "${src}"/feats.scp "${src}"/utt2*; do
        [ -f "${path}" ] || continue
        name=${path##*/}
        [[ ${name} =~ ^(wav\.scp|feats\.scp|utt2[A-Za-z0-9_]+)$ ]] || continue
        if ${any_segments} && [ "${name}" = wav.scp ]; then
            continue
        fi
        names+=("${name}")
    done
done
mapfile -t names < <(printf '%s\n' ${names[@]+"${names[@]}"} | sed '/^$/d' | sort -u)

for name in ${names[@]+"${names[@]}"}; do
    missing=""
    for src in "${srcs[@]}"; do
        [ -f "${src}/${name}" ] || missing="${missing} ${src}"
    done
    if [ -n "${missing}" ]; then
        echo "$0: warning: not combining ${name}: missing in${missing}" >&2
        continue
    fi
    for src in "${srcs[@]}"; do
        cat "${src}/${name}"
    done | if ${shared_ids}; then sort -u; else sort -s -k1,1; fi > "${tmpdir}/${name}"
    if ${shared_ids}; then
        conflict=$(awk '{ print $1 }' "${tmpdir}/${name}" | uniq -d | head -n 5 | paste -sd ' ')
        if [ -n "${conflict}" ]; then
            echo "$0: utterances with different ${name} lines in different sources (e.g. ${conflict}); they cannot be the same utterance" >&2
            exit 1
        fi
    fi
done

# Utterance ids must be unique across the sources.
index=""
if ${any_segments}; then
    index=${tmpdir}/segments
else
    for name in wav.scp feats.scp; do
        if [ -f "${tmpdir}/${name}" ]; then
            index=${tmpdir}/${name}
            break
        fi
    done
fi
if [ -z "${index}" ]; then
    echo "$0: the sources have no wav.scp (or feats.scp) in common, so there is no utterance list to combine" >&2
    exit 1
fi
dups=$(awk '{ print $1 }' "${index}" | sort | uniq -d | head -n 5 | paste -sd ' ')
if [ -n "${dups}" ]; then
    echo "$0: utterance ids appear in more than one source (e.g. ${dups}); make them unique (e.g. prefix each source's ids) before combining" >&2
    exit 1
fi

if ${any_segments}; then
    # wav.scp: one line per recording; sources may share a recording if they agree on it.
    for src in "${srcs[@]}"; do
        cat "${src}/wav.scp"
    done | sort -u > "${tmpdir}/wav.scp"
    conflict=$(awk '{ print $1 }' "${tmpdir}/wav.scp" | uniq -d | head -n 5 | paste -sd ' ')
    if [ -n "${conflict}" ]; then
        echo "$0: recordings with different wav.scp lines in different sources (e.g. ${conflict}); give them distinct ids" >&2
        exit 1
    fi
    sort -s -k1,1 "${tmpdir}/segments" > "${tmpdir}/segments.sorted"
    mv "${tmpdir}/segments.sorted" "${tmpdir}/segments"
fi

# Write: the combined files, and no stale copy of a file that was not combined this time.
mkdir -p "${dest}"
for name in segments wav.scp ${names[@]+"${names[@]}"}; do
    if [ -f "${tmpdir}/${name}" ]; then
        cp "${tmpdir}/${name}" "${dest}/${name}"
    else
        rm -f "${dest}/${name}"
    fi
done
if [ -n "${labels_from}" ]; then
    cp "${labels_from}/labels.txt" "${dest}/labels.txt"
fi
for src in "${srcs[@]}"; do
    if [ -f "${src}/stats.json" ]; then
        echo "$0: warning: not combining stats.json (statistics cannot be merged from the files); recompute them for ${dest}" >&2
        break
    fi
done
echo "$0: combined $(wc -l < "${index}") utterances from ${#srcs[@]} directories into ${dest}" >&2
