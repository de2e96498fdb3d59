#!/usr/bin/env bash
# Compute log-mel fbank features of a data directory into a feature dump directory.
#
# The shape of Kaldi's steps/make_mfcc.sh: validate <data>, split it into <nj> parts, run
# audiossl.bin.compute_fbank on each part through $cmd, merge the parts, count what came out.
#
# Writes <dump-dir>/:
#   feats.scp       raw (T, 128) float32 log-mel fbank (arks in <dump-dir>/data/feats.JOB.ark)
#   utt2num_frames  frames per utterance
#   bad_utts        utterances left out: '<utt> <path> <reason>' (empty when all were fine)
#   utt2label, utt2dur, labels.txt   copied from <data>, filtered to the extracted utterances
#   stats.json      global and per-bin mean/std of feats.scp (audiossl.bin.compute_stats)
#   log/fbank.JOB.log, log/stats.log
# With --from-dump DIR nothing is computed: the features (and bad_utts) of <data>'s utterances are
# taken from DIR, a dump of a superset of <data> (e.g. the union of ESC-50's fold sets, so that each
# clip is extracted once, not once per set it belongs to).
set -euo pipefail

# Begin configuration section.
nj=4                           # number of parallel jobs (at most one per utterance)
cmd=$(dirname "$0")/run.pl     # how to run the jobs: run.pl, queue.pl or slurm.pl, with their options
kind=beats                     # front end: beats or eat (see audiossl/data/fbank.py)
skip_bad=false                 # true: leave out unusable audio (listed in bad_utts) instead of failing
from_dump=""                   # a dump dir of a superset of <data>: take its features, compute none
# End configuration section.

echo "$0 $*"  # the command line, for the log

help_message=$(cat <<EOF_HELP
Usage: $0 [options] <data-dir> <dump-dir>
e.g.: $0 --nj 8 --kind eat data/train dump/fbank_eat/train
Options:
  --nj <n>              # parallel jobs (default: ${nj})
  --cmd <cmd>           # job runner, e.g. 'utils/queue.pl --mem 2G' (default: ${cmd})
  --kind <beats|eat>    # whose official front end (default: ${kind})
  --skip-bad <bool>     # true: drop unusable utterances, listed in <dump-dir>/bad_utts (default: ${skip_bad})
  --from-dump <dir>     # take the features from this dump of a superset of <data> (default: compute them)
EOF_HELP
)

utils=$(dirname "$0")
# shellcheck source=utils/parse_options.sh
. "${utils}/parse_options.sh" || exit 1

if [ $# -ne 2 ]; then
    echo "${help_message}" >&2
    exit 1
fi

data=$1
dump=$2

case "${kind}" in
    beats|eat) ;;
    *) echo "$0: --kind must be beats or eat, got '${kind}'" >&2; exit 1 ;;
esac
case "${skip_bad}" in
    true|false) ;;
    *) echo "$0: --skip-bad must be true or false, got '${skip_bad}'" >&2; exit 1 ;;
esac

# Check the data directory; labels and durations are optional here (unlabelled pre-training data).
validate_opts=()
[ -f "${data}/utt2label" ] || validate_opts+=(--no-labels)
[ -f "${data}/utt2dur" ] || validate_opts+=(--no-durations)
if ! python3 -m audiossl.bin.validate_data_dir "${validate_opts[@]}" "${data}"; then
    echo "$0: ${data} is not a valid data directory (problems above); fix it and rerun" >&2
    exit 1
fi

if [ -f "${data}/segments" ]; then
    num_utts=$(wc -l < "${data}/segments")
else
    num_utts=$(wc -l < "${data}/wav.scp")
fi
if [ "${nj}" -gt "${num_utts}" ]; then
    echo "$0: only ${num_utts} utterances: using ${num_utts} jobs instead of ${nj}"
    nj=${num_utts}
fi

mkdir -p "${dump}/log"
rm -f "${dump}"/{feats.scp,utt2num_frames,bad_utts,utt2label,utt2dur,labels.txt,stats.json}

if [ -n "${from_dump}" ]; then
    # Features of a superset: keep the lines of <data>'s utterances.
    if [ ! -f "${from_dump}/feats.scp" ]; then
        echo "$0: ${from_dump}/feats.scp not found; extract the features of the superset first" >&2
        exit 1
    fi
    ids=${data}/wav.scp
    [ -f "${data}/segments" ] && ids=${data}/segments
    for f in feats.scp utt2num_frames bad_utts; do
        if [ -f "${from_dump}/${f}" ]; then
            "${utils}/filter_scp.pl" "${ids}" "${from_dump}/${f}" > "${dump}/${f}"
        else
            : > "${dump}/${f}"
        fi
    done
    num_bad=$(wc -l < "${dump}/bad_utts")
    cat "${dump}/feats.scp" "${dump}/bad_utts" > "${dump}/log/found"
    absent=$("${utils}/filter_scp.pl" --exclude "${dump}/log/found" "${ids}" | awk '{ print $1 }' | head -n 5 | paste -sd ' ')
    rm -f "${dump}/log/found"
    if [ -n "${absent}" ]; then
        echo "$0: ${from_dump} has no features for some utterances of ${data} (e.g. ${absent}); it is not a dump of a superset" >&2
        exit 1
    fi
    if [ "${num_bad}" -gt 0 ] && [ "${skip_bad}" = false ]; then
        echo "$0: ${num_bad} of ${num_utts} utterances of ${data} could not be used; they are listed in" \
            "${dump}/bad_utts. Fix or remove them, or rerun with --skip-bad true to leave them out." >&2
        exit 1
    fi
else
    mkdir -p "${dump}/data"
    rm -f "${dump}"/data/feats.*.ark "${dump}"/data/feats.*.scp "${dump}"/data/bad.* "${dump}"/data/utt2num_frames.*

    "${utils}/split_data.sh" "${data}" "${nj}"
    sdata=${data}/split${nj}

    jobs_ok=true
    # ${cmd} may carry options of its own ('utils/queue.pl --mem 2G'): split it into words.
    # shellcheck disable=SC2086
    ${cmd} JOB=1:"${nj}" "${dump}/log/fbank.JOB.log" \
        python3 -m audiossl.bin.compute_fbank --kind "${kind}" --skip-bad "${skip_bad}" \
            --utt2num-frames "${dump}/data/utt2num_frames.JOB" \
            "${sdata}/JOB" "${dump}/data/feats.JOB.ark" "${dump}/data/feats.JOB.scp" "${dump}/data/bad.JOB" \
        || jobs_ok=false

    # The bad lists are merged even when jobs failed: they say what to fix.
    for n in $(seq "${nj}"); do
        if [ -f "${dump}/data/bad.${n}" ]; then cat "${dump}/data/bad.${n}"; fi
    done | LC_ALL=C sort -k1,1 > "${dump}/bad_utts"
    num_bad=$(wc -l < "${dump}/bad_utts")

    if ! "${jobs_ok}"; then
        for n in $(seq "${nj}"); do
            log=${dump}/log/fbank.${n}.log
            if [ ! -f "${log}" ] || ! grep -q "Ended (code 0)" "${log}"; then
                echo "$0: job ${n} failed; the last lines of ${log}:" >&2
                if [ -f "${log}" ]; then tail -n 15 "${log}" >&2; fi
            fi
        done
        if [ "${num_bad}" -gt 0 ] && [ "${skip_bad}" = false ]; then
            echo "$0: ${num_bad} of ${num_utts} utterances of ${data} could not be used; they are listed in" \
                "${dump}/bad_utts. Fix or remove them, or rerun with --skip-bad true to leave them out." >&2
        else
            echo "$0: feature extraction failed for ${data}; see the logs above" >&2
        fi
        exit 1
    fi

    for n in $(seq "${nj}"); do
        cat "${dump}/data/feats.${n}.scp"
    done | LC_ALL=C sort -k1,1 > "${dump}/feats.scp"
    for n in $(seq "${nj}"); do
        cat "${dump}/data/utt2num_frames.${n}"
    done | LC_ALL=C sort -k1,1 > "${dump}/utt2num_frames"
fi

num_done=$(wc -l < "${dump}/feats.scp")
if [ $((num_done * 100)) -lt $((num_utts * 95)) ]; then
    echo "$0: only ${num_done} of ${num_utts} utterances of ${data} were extracted (under 95%);" \
        "the others are listed in ${dump}/bad_utts" >&2
    exit 1
fi
if [ "${num_bad}" -gt 0 ]; then
    echo "$0: left out ${num_bad} of ${num_utts} utterances (--skip-bad true); they are listed in ${dump}/bad_utts"
fi

# Per-utterance files, filtered to the utterances that have features; labels.txt as it is.
for f in utt2label utt2dur; do
    if [ -f "${data}/${f}" ]; then
        awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "${dump}/feats.scp" "${data}/${f}" > "${dump}/${f}"
    fi
done
if [ -f "${data}/labels.txt" ]; then
    cp "${data}/labels.txt" "${dump}/labels.txt"
fi

if ! python3 -m audiossl.bin.compute_stats --skip-bad "${skip_bad}" "${dump}/feats.scp" "${dump}/stats.json" \
        > "${dump}/log/stats.log" 2>&1; then
    echo "$0: computing ${dump}/stats.json failed; the last lines of ${dump}/log/stats.log:" >&2
    tail -n 15 "${dump}/log/stats.log" >&2
    exit 1
fi

echo "Succeeded creating fbank for ${data}: ${num_done} utterances"
