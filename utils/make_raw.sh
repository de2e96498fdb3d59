#!/usr/bin/env bash
# Dump the audio of a data directory, 16 kHz mono 16-bit FLAC (or WAV) in Kaldi arks, into a raw
# dump directory that every front end reads; and the fbank statistics of each front end asked for.
#
# The shape of utils/make_fbank.sh: validate <data>, split it into <nj> parts, run
# audiossl.bin.dump_audio on each part through $cmd, merge the parts, count what came out.
#
# Writes <dump-dir>/:
#   wav.scp          '<utt> <dump-dir>/data/wav.JOB[_K].ark:<offset>' lines (K: the job's further
#                    shards, --shard-mb); kaldiio.load_scp gives
#                    (16000, float64 samples k / 32768 of the stored 16-bit values k)
#   utt2num_samples  samples per utterance (at 16 kHz)
#   bad_utts         utterances left out: '<utt> <path> <reason>' (empty when all were fine)
#   clipped_utts     utterances with samples outside [-1, 1), clipped to 16 bits: '<utt> <num_clipped> <peak>'
#   utt2label, utt2dur, labels.txt   copied from <data>, filtered to the dumped utterances
#   stats_<kind>.json  for each --stats-kinds kind: the statistics of that front end's fbank of
#                    wav.scp, as a fbank dump's stats.json (audiossl.bin.compute_stats --kind)
#   log/dump.JOB.log, log/stats_<kind>.JOB.log
# With --from-dump DIR nothing is encoded: the lines of <data>'s utterances are taken from DIR, a raw
# dump of a superset of <data> (e.g. the union of ESC-50's fold sets); the statistics are the set's own.
set -euo pipefail

# Begin configuration section.
nj=4                           # number of parallel jobs (at most one per utterance)
cmd=$(dirname "$0")/run.pl     # how to run the jobs: run.pl, queue.pl or slurm.pl, with their options
audio_format=flac              # flac (lossless, about half of wav) or wav, both 16-bit PCM
shard_mb=256                   # a job starts a new ark once one holds this many MB (0: one ark per job):
                               # shards that training reads front to back (data.reading sequential)
stats_kinds="beats eat"        # front ends whose fbank statistics to compute ("" for none)
skip_bad=false                 # true: leave out unusable audio (listed in bad_utts) instead of failing
from_dump=""                   # a raw dump dir of a superset of <data>: take its lines, encode nothing
# End configuration section.

echo "$0 $*"  # the command line, for the log

help_message=$(cat <<EOF_HELP
Usage: $0 [options] <data-dir> <dump-dir>
e.g.: $0 --nj 8 --stats-kinds "beats eat" data/train dump/raw/train
Options:
  --nj <n>                 # parallel jobs (default: ${nj})
  --cmd <cmd>              # job runner, e.g. 'utils/queue.pl --mem 2G' (default: ${cmd})
  --audio-format <flac|wav> # how each utterance is stored in the arks, 16-bit PCM (default: ${audio_format})
  --shard-mb <mb>          # size of each ark (shard) a job writes, 0: one per job (default: ${shard_mb})
  --stats-kinds "<kinds>"  # front ends (beats, eat) to write stats_<kind>.json for, "" for none (default: ${stats_kinds})
  --skip-bad <bool>        # true: drop unusable utterances, listed in <dump-dir>/bad_utts (default: ${skip_bad})
  --from-dump <dir>        # take the audio from this raw dump of a superset of <data> (default: encode it)
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

case "${audio_format}" in
    flac|wav) ;;
    *) echo "$0: --audio-format must be flac or wav, got '${audio_format}'" >&2; exit 1 ;;
esac
for kind in ${stats_kinds}; do
    case "${kind}" in
        beats|eat) ;;
        *) echo "$0: --stats-kinds takes beats and/or eat, got '${kind}'" >&2; exit 1 ;;
    esac
done
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
rm -f "${dump}"/{wav.scp,utt2num_samples,bad_utts,clipped_utts,utt2label,utt2dur,labels.txt} "${dump}"/stats_*.json

# show_failed_jobs <log prefix> <jobs>: after a failed $cmd JOB=1:<jobs>, the tail of each failed job's log.
show_failed_jobs() {
    local prefix=$1 jobs=$2 n log
    for n in $(seq "${jobs}"); do
        log=${prefix}.${n}.log
        if [ ! -f "${log}" ] || ! grep -q "Ended (code 0)" "${log}"; then
            echo "$0: job ${n} failed; the last lines of ${log}:" >&2
            if [ -f "${log}" ]; then tail -n 15 "${log}" >&2; fi
        fi
    done
}

if [ -n "${from_dump}" ]; then
    # Audio of a superset: keep the lines of <data>'s utterances.
    if [ ! -f "${from_dump}/wav.scp" ]; then
        echo "$0: ${from_dump}/wav.scp not found; dump the audio of the superset first" >&2
        exit 1
    fi
    ids=${data}/wav.scp
    [ -f "${data}/segments" ] && ids=${data}/segments
    for f in wav.scp utt2num_samples bad_utts clipped_utts; do
        if [ -f "${from_dump}/${f}" ]; then
            "${utils}/filter_scp.pl" "${ids}" "${from_dump}/${f}" > "${dump}/${f}"
        else
            : > "${dump}/${f}"
        fi
    done
    num_bad=$(wc -l < "${dump}/bad_utts")
    cat "${dump}/wav.scp" "${dump}/bad_utts" > "${dump}/log/found"
    absent=$("${utils}/filter_scp.pl" --exclude "${dump}/log/found" "${ids}" | awk '{ print $1 }' | head -n 5 | paste -sd ' ')
    rm -f "${dump}/log/found"
    if [ -n "${absent}" ]; then
        echo "$0: ${from_dump} has no audio for some utterances of ${data} (e.g. ${absent}); it is not a dump of a superset" >&2
        exit 1
    fi
    if [ "${num_bad}" -gt 0 ] && [ "${skip_bad}" = false ]; then
        echo "$0: ${num_bad} of ${num_utts} utterances of ${data} could not be used; they are listed in" \
            "${dump}/bad_utts. Fix or remove them, or rerun with --skip-bad true to leave them out." >&2
        exit 1
    fi
else
    mkdir -p "${dump}/data"
    rm -f "${dump}"/data/wav.*.ark "${dump}"/data/wav.*.scp "${dump}"/data/bad.* \
        "${dump}"/data/utt2num_samples.* "${dump}"/data/clipped.*

    "${utils}/split_data.sh" "${data}" "${nj}"
    sdata=${data}/split${nj}

    jobs_ok=true
    # ${cmd} may carry options of its own ('utils/queue.pl --mem 2G'): split it into words.
    # shellcheck disable=SC2086
    ${cmd} JOB=1:"${nj}" "${dump}/log/dump.JOB.log" \
        python3 -m audiossl.bin.dump_audio --audio-format "${audio_format}" --skip-bad "${skip_bad}" \
            --shard-mb "${shard_mb}" \
            --utt2num-samples "${dump}/data/utt2num_samples.JOB" --clipped "${dump}/data/clipped.JOB" \
            "${sdata}/JOB" "${dump}/data/wav.JOB.ark" "${dump}/data/wav.JOB.scp" "${dump}/data/bad.JOB" \
        || jobs_ok=false

    # The bad lists are merged even when jobs failed: they say what to fix.
    for n in $(seq "${nj}"); do
        if [ -f "${dump}/data/bad.${n}" ]; then cat "${dump}/data/bad.${n}"; fi
    done | LC_ALL=C sort -k1,1 > "${dump}/bad_utts"
    num_bad=$(wc -l < "${dump}/bad_utts")

    if ! "${jobs_ok}"; then
        show_failed_jobs "${dump}/log/dump" "${nj}"
        if [ "${num_bad}" -gt 0 ] && [ "${skip_bad}" = false ]; then
            echo "$0: ${num_bad} of ${num_utts} utterances of ${data} could not be used; they are listed in" \
                "${dump}/bad_utts. Fix or remove them, or rerun with --skip-bad true to leave them out." >&2
        else
            echo "$0: dumping the audio failed for ${data}; see the logs above" >&2
        fi
        exit 1
    fi

    for f in wav utt2num_samples clipped; do
        for n in $(seq "${nj}"); do
            if [ "${f}" = wav ]; then cat "${dump}/data/wav.${n}.scp"; else cat "${dump}/data/${f}.${n}"; fi
        done | LC_ALL=C sort -k1,1 > "${dump}/${f}.tmp"
    done
    mv "${dump}/wav.tmp" "${dump}/wav.scp"
    mv "${dump}/utt2num_samples.tmp" "${dump}/utt2num_samples"
    mv "${dump}/clipped.tmp" "${dump}/clipped_utts"
fi

num_done=$(wc -l < "${dump}/wav.scp")
if [ $((num_done * 100)) -lt $((num_utts * 95)) ]; then
    echo "$0: only ${num_done} of ${num_utts} utterances of ${data} were dumped (under 95%);" \
        "the others are listed in ${dump}/bad_utts" >&2
    exit 1
fi
if [ "${num_bad}" -gt 0 ]; then
    echo "$0: left out ${num_bad} of ${num_utts} utterances (--skip-bad true); they are listed in ${dump}/bad_utts"
fi
num_clipped=$(wc -l < "${dump}/clipped_utts")
if [ "${num_clipped}" -gt 0 ]; then
    echo "$0: WARNING: ${num_clipped} of ${num_done} utterances had samples outside [-1, 1), clipped to 16 bits;" \
        "they are listed in ${dump}/clipped_utts (count and peak)" >&2
fi

# Per-utterance files, filtered to the dumped utterances; labels.txt as it is.
for f in utt2label utt2dur; do
    if [ -f "${data}/${f}" ]; then
        awk 'NR == FNR { keep[$1] = 1; next } ($1 in keep)' "${dump}/wav.scp" "${data}/${f}" > "${dump}/${f}"
    fi
done
if [ -f "${data}/labels.txt" ]; then
    cp "${data}/labels.txt" "${dump}/labels.txt"
fi

# Statistics of each front end's fbank: in parts, one per job, whose accumulators are then merged.
if [ -n "${stats_kinds// /}" ]; then
    snj=$(( nj < num_done ? nj : num_done ))
    split=${dump}/log/split${snj}
    mkdir -p "${split}"
    split_outs=()
    for n in $(seq "${snj}"); do split_outs+=("${split}/wav.${n}.scp"); done
    "${utils}/split_scp.pl" "${dump}/wav.scp" "${split_outs[@]}"
    for kind in ${stats_kinds}; do
        rm -f "${split}"/stats_"${kind}".*.json
        # shellcheck disable=SC2086
        if ! ${cmd} JOB=1:"${snj}" "${dump}/log/stats_${kind}.JOB.log" \
                python3 -m audiossl.bin.compute_stats --kind "${kind}" --skip-bad "${skip_bad}" --partial true \
                    "${split}/wav.JOB.scp" "${split}/stats_${kind}.JOB.json"; then
            show_failed_jobs "${dump}/log/stats_${kind}" "${snj}"
            echo "$0: computing ${dump}/stats_${kind}.json failed; see the logs above" >&2
            exit 1
        fi
        parts=()
        for n in $(seq "${snj}"); do parts+=("${split}/stats_${kind}.${n}.json"); done
        if ! python3 -m audiossl.bin.compute_stats --merge true "${parts[@]}" "${dump}/stats_${kind}.json" \
                > "${dump}/log/stats_${kind}.log" 2>&1; then
            echo "$0: merging ${dump}/stats_${kind}.json failed; the last lines of ${dump}/log/stats_${kind}.log:" >&2
            tail -n 15 "${dump}/log/stats_${kind}.log" >&2
            exit 1
        fi
    done
    rm -rf "${split}"
fi

echo "Succeeded dumping raw audio (${audio_format}) for ${data}: ${num_done} utterances"
