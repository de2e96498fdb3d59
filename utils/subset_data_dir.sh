#!/usr/bin/env bash
# Copy a subset of a data directory's utterances into a new directory, keeping every file
# consistent: the per-utterance files (segments, feats.scp, utt2*, and wav.scp when there is no
# segments file) are filtered to the chosen utterances; with segments, wav.scp (and reco2*) keep
# only the recordings those segments use; labels.txt and stats.json are copied as they are.
#
# Which N utterances: evenly spaced through the sorted list (default), the first N, the last N,
# or N at random (reproducible with --seed). --utt-list takes the utterances listed in a file
# (first field of each line) instead.
set -euo pipefail
export LC_ALL=C

mode=spread     # spread, first, last or random (--first, --last and --random set it)
seed=1          # random seed for --random
utt_list=""     # take exactly the utterances in this file (first field of each line)

help_message=$(cat <<EOF
Usage: $0 [--first|--last|--random [--seed S]] <src-data-dir> <N> <dest-data-dir>
   or: $0 --utt-list <file> <src-data-dir> <dest-data-dir>
e.g.: $0 --random --seed 3 data/train 1000 data/train_1k
Options:
  --first            the first N utterances (sorted order)
  --last             the last N utterances
  --random           N utterances at random; --seed S [${seed}] makes the choice reproducible
  --utt-list FILE    the utterances named in FILE (first field of each line)
  (default: N utterances evenly spaced through the sorted list)
EOF
)

# --first/--last/--random take no value: turn them into --mode X for parse_options.sh.
args=()
for arg in "$@"; do
    case ${arg} in
        --first | --last | --random) args+=(--mode "${arg#--}") ;;
        *) args+=("${arg}") ;;
    esac
done
set -- ${args[@]+"${args[@]}"}
# shellcheck source=SCRIPTDIR/parse_options.sh
. "$(dirname "$0")/parse_options.sh"

usage() {
    printf '%s\n' "${help_message}" >&2
    exit 1
}
case ${mode} in
    spread | first | last | random) ;;
    *) echo "$0: unknown --mode '${mode}'; use --first, --last or --random" >&2; exit 1 ;;
esac
if [ -n "${utt_list}" ]; then
    [ $# -eq 2 ] || usage
    src=$1
    dest=$2
    num=""
else
    [ $# -eq 3 ] || usage
    src=$1
    num=$2
    dest=$3
    if ! [[ ${num} =~ ^[1-9][0-9]*$ ]]; then
        echo "$0: N must be a positive integer, got '${num}'" >&2
        exit 1
    fi
fi
[[ ${seed} =~ ^[0-9]+$ ]] || { echo "$0: --seed needs a non-negative integer, got '${seed}'" >&2; exit 1; }

# The utterance list of a data dir: its segments, else wav.scp, else feats.scp.
index=""
for f in segments wav.scp feats.scp; do
    if [ -f "${src}/${f}" ]; then
        index=${src}/${f}
        break
    fi
done
if [ -z "${index}" ]; then
    echo "$0: ${src} has no segments, wav.scp or feats.scp; is it a data directory?" >&2
    exit 1
fi
if [ -d "${dest}" ] && [ "$(cd "${src}" && pwd -P)" = "$(cd "${dest}" && pwd -P)" ]; then
    echo "$0: source and destination are the same directory (${src}); choose another destination" >&2
    exit 1
fi

tmpdir=$(mktemp -d)
trap 'rm -rf "${tmpdir}"' EXIT
utils=$(dirname "$0")

awk 'NF > 0 { print $1 }' "${index}" > "${tmpdir}/all"
total=$(wc -l < "${tmpdir}/all")
if [ -n "${utt_list}" ]; then
    if [ ! -f "${utt_list}" ]; then
        echo "$0: utterance list '${utt_list}' does not exist; check the path" >&2
        exit 1
    fi
    awk 'NF > 0 { print $1 }' "${utt_list}" | sort -u > "${tmpdir}/wanted"
    "${utils}/filter_scp.pl" "${tmpdir}/wanted" "${tmpdir}/all" > "${tmpdir}/chosen"
else
    if [ "${num}" -gt "${total}" ]; then
        echo "$0: ${src} has ${total} utterances, fewer than the ${num} asked for; ask for at most ${total}" >&2
        exit 1
    fi
    case ${mode} in
        first) head -n "${num}" "${tmpdir}/all" > "${tmpdir}/chosen" ;;
        last) tail -n "${num}" "${tmpdir}/all" > "${tmpdir}/chosen" ;;
        spread) awk -v n="${num}" -v total="${total}" \
            'BEGIN { next_i = 0; k = 0 } { if (k < n && NR - 1 == next_i) { print; k++; next_i = int(k * total / n) } }' \
            "${tmpdir}/all" > "${tmpdir}/chosen" ;;
        random) perl -e 'srand($ARGV[0]); my @l = <STDIN>;
                for (my $i = $#l; $i > 0; $i--) { my $j = int(rand($i + 1)); @l[$i, $j] = @l[$j, $i]; }
                print @l[0 .. $ARGV[1] - 1];' "${seed}" "${num}" < "${tmpdir}/all" | sort > "${tmpdir}/chosen" ;;
    esac
fi

chosen=$(wc -l < "${tmpdir}/chosen")
if [ "${chosen}" -eq 0 ]; then
    echo "$0: none of the utterances of ${utt_list} is in ${src}; check that the list holds utterance ids" >&2
    exit 1
fi
mkdir -p "${dest}"

# Per-utterance files (names matching utt2<word>; per-job pieces such as utt2dur.3 are not).
for path in "${src}"/segments "${src}"/wav.scp "${src}"/feats.scp "${src}"/utt2*; do
    [ -f "${path}" ] || continue
    name=${path##*/}
    [[ ${name} =~ ^(segments|wav\.scp|feats\.scp|utt2[A-Za-z0-9_]+)$ ]] || continue
    if [ "${name}" = wav.scp ] && [ -f "${src}/segments" ]; then
        continue
    fi
    "${utils}/filter_scp.pl" "${tmpdir}/chosen" "${path}" > "${dest}/${name}"
done
# Per-recording files, when the utterances are segments.
if [ -f "${src}/segments" ]; then
    awk '{ print $2 }' "${dest}/segments" | sort -u > "${tmpdir}/recordings"
    for path in "${src}"/wav.scp "${src}"/reco2*; do
        [ -f "${path}" ] || continue
        name=${path##*/}
        [[ ${name} =~ ^(wav\.scp|reco2[A-Za-z0-9_]+)$ ]] || continue
        "${utils}/filter_scp.pl" "${tmpdir}/recordings" "${path}" > "${dest}/${name}"
    done
fi
for name in labels.txt stats.json; do
    if [ -f "${src}/${name}" ]; then
        cp "${src}/${name}" "${dest}/${name}"
    fi
done

if [ -n "${utt_list}" ]; then
    wanted=$(wc -l < "${tmpdir}/wanted")
    echo "$0: wrote ${chosen} of the ${wanted} utterances listed in ${utt_list} (${src} has ${total}) to ${dest}" >&2
else
    echo "$0: wrote ${chosen} of ${total} utterances of ${src} (${mode}) to ${dest}" >&2
fi
