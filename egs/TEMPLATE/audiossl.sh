#!/usr/bin/env bash
# The stage logic of every audiossl recipe. A recipe's run.sh sets options and calls this script;
# the options below are the defaults. Stages are numbered, skippable and resumable:
#   ./run.sh --stage 3 --stop-stage 5
#
#  1  data preparation      local/data.sh                      -> data/<set>/
#  2  fbank features         utils/make_fbank.sh per model kind -> dump/fbank_<kind>/<set>/
#     (or raw audio)         (--feats-type raw: utils/make_raw.sh -> dump/raw/<set>/, both models)
#  3  BEATs rounds 1..N      tokenizer r, then SSL model r      -> exp/beats_tok_r<r>/, exp/beats_ssl_r<r>/
#  4  EAT pre-training                                          -> exp/eat_pretrain/
#  5  fine-tuning            one per model, init (and fold)      -> exp/finetune_<model>[_scratch][_fold<k>]/
#  6  scoring                each fine-tuned model, each test set -> exp/finetune_*/scores/<set>/
#  7  linear probes          frozen encoders, and the log-mel     -> exp/probe_<model>[_scratch]/scores/<set>/,
#                            statistics baseline                     exp/baseline_logmel/scores/<set>/
#  8  results                RESULTS.md and plots
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { if [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }
SECONDS=0

# General options
stage=1               # first stage to run
stop_stage=10000      # last stage to run
nj=4                  # parallel jobs for feature extraction and scoring
ngpu=auto             # GPUs per training job: 0 = CPU; auto = 1 when this machine has a GPU, else 0
nproc=1               # training processes on CPU (gloo DDP) when ngpu=0
parallel_runs=1       # independent runs at a time in stages 5 (fine-tunings) and 7 (probes); on CPU
                      # each gets cores/parallel_runs threads
skip_bad=false        # drop unreadable audio (listed in dump/*/<set>/bad_utts) instead of failing
feats_type=fbank      # what stage 2 dumps: fbank (float32 log-mel per model front end, dump/fbank_<kind>/)
                      # or raw (16-bit FLAC audio that both models read, dump/raw/, with stats_<kind>.json)
local_data_opts=""    # options passed to local/data.sh

# Data sets
train_set=train       # training set (fine-tuning; and pre-training unless pretrain_set is set)
valid_set=dev         # validation set
test_sets="test"      # sets to score
pretrain_set=""       # set used for self-supervised pre-training (default: train_set); one set, no {fold}
pretrain_valid_set="" # set validating pre-training (default: valid_set, {fold} as the first fold)
folds=""              # cross-validation folds, e.g. "1 2 3 4 5": {fold} in set names is replaced

# Pre-training
pretrain_models="beats eat"   # which self-supervised models to pre-train (stages 3, 4)
beats_rounds=2                # BEATs iterations: tokenizer r -> SSL model r, r = 1..N
beats_last_teacher=""         # teacher of the last round's tokenizer instead of SSL r-1: a fine-tuned
                              # model.pt (BEATs "iter3+": its per-patch logits are the targets)
beats_tokenizer_r1_config=conf/beats_tokenizer_r1.yaml   # round 1: random-projection tokenizer
beats_tokenizer_config=conf/beats_tokenizer.yaml         # rounds >= 2: self-distilled tokenizer
beats_tokenizer_ft_teacher_config=conf/beats_tokenizer_ft_teacher.yaml  # the last round's with --beats-last-teacher
beats_ssl_config=conf/beats_ssl.yaml
eat_pretrain_config=conf/eat_pretrain.yaml
pretrain_args=""              # extra --section.key value options for every pre-training run

# Fine-tuning and scoring
finetune_models="beats eat"   # encoders to fine-tune (stage 5)
finetune_config="conf/finetune_{model}.yaml"  # {model} is replaced by beats/eat
finetune_init=pretrained      # "pretrained", "random" (from-scratch control: the same architecture and
                              # config, random weights, exp/finetune_<model>_scratch) or both
pretrained=""                 # a model.pt (ours or imported) to fine-tune instead of our pre-training
pretrain_exp=exp              # where the pre-trained exp dirs are (e.g. ../audioset/exp for ESC-50)
finetune_args=""              # extra --section.key value options for every fine-tuning run
score_args=""                 # extra options for audiossl.bin.score

# Linear probes and the trivial baseline (stage 7)
probe_models=""               # frozen encoders to probe: beats, eat (default: the fine-tuned models)
probe_args=""                 # extra options for audiossl.bin.probe
baseline=true                 # also score log-mel mean/std statistics + a linear classifier

help_message=$(cat <<EOF_HELP
Usage: $0 [options]
e.g.: $0 --stage 2 --stop-stage 5 --ngpu 1

Options (defaults in brackets):
  --stage N                  first stage to run [${stage}]
  --stop-stage N             last stage to run [${stop_stage}]
  --nj N                     parallel jobs for features and scoring [${nj}]
  --ngpu N|auto              GPUs per training job, 0 = CPU, auto = 1 if a GPU is here [${ngpu}]
  --nproc N                  training processes on CPU (gloo DDP) [${nproc}]
  --parallel-runs N          fine-tunings / probes at a time (stages 5, 7); on CPU cores/N threads each [${parallel_runs}]
  --skip-bad true|false      drop unreadable audio instead of failing [${skip_bad}]
  --feats-type fbank|raw     stage 2 dumps fbank per model (dump/fbank_<kind>) or FLAC audio for both (dump/raw) [${feats_type}]
  --local-data-opts "..."    options for local/data.sh [${local_data_opts}]
  --train-set NAME           [${train_set}]
  --valid-set NAME           [${valid_set}]
  --test-sets "A B"          [${test_sets}]
  --pretrain-set NAME        set for pre-training (one set, no {fold}), default the train set [${pretrain_set}]
  --pretrain-valid-set NAME  set validating pre-training, default the valid set (first fold) [${pretrain_valid_set}]
  --folds "1 2 ..."          cross-validation folds; {fold} in set names is replaced [${folds}]
  --pretrain-models "..."    self-supervised models to pre-train: beats, eat [${pretrain_models}]
  --beats-rounds N           BEATs iterations [${beats_rounds}]
  --beats-last-teacher PATH  fine-tuned model.pt teaching the last round's tokenizer (iter3+) [${beats_last_teacher}]
  --beats-tokenizer-r1-config FILE  [${beats_tokenizer_r1_config}]
  --beats-tokenizer-config FILE     [${beats_tokenizer_config}]
  --beats-tokenizer-ft-teacher-config FILE  the last round's tokenizer with --beats-last-teacher [${beats_tokenizer_ft_teacher_config}]
  --beats-ssl-config FILE           [${beats_ssl_config}]
  --eat-pretrain-config FILE        [${eat_pretrain_config}]
  --pretrain-args "..."      extra --section.key value options for pre-training [${pretrain_args}]
  --finetune-models "..."    encoders to fine-tune: beats, eat [${finetune_models}]
  --finetune-config FILE     {model} is replaced by the model name [${finetune_config}]
  --finetune-init "..."      pretrained, random (from-scratch control, exp/finetune_<model>_scratch) or both [${finetune_init}]
  --pretrained PATH          model.pt to fine-tune instead of our own pre-training [${pretrained}]
  --pretrain-exp DIR         where pre-trained exp dirs are, e.g. ../audioset/exp [${pretrain_exp}]
  --finetune-args "..."      extra options for fine-tuning [${finetune_args}]
  --score-args "..."         extra options for audiossl.bin.score [${score_args}]
  --probe-models "..."       frozen encoders to probe, default the fine-tuned ones [${probe_models}]
  --probe-args "..."         extra options for audiossl.bin.probe [${probe_args}]
  --baseline true|false      log-mel statistics + linear classifier, the floor a model must clear [${baseline}]
EOF_HELP
)

log "$0 $*"
run_args=$(printf '%q ' "$0" "$@")
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: unexpected arguments: $*"
    echo "${help_message}" >&2
    exit 2
fi

. ./path.sh
. ./cmd.sh
: "${train_cmd:?cmd.sh must set train_cmd}" "${cuda_cmd:?cmd.sh must set cuda_cmd}" "${feats_cmd:?cmd.sh must set feats_cmd}"

[ -z "${folds}" ] && fold_list="none" || fold_list=${folds}
first_fold=${fold_list%% *}
[ -z "${probe_models}" ] && probe_models=${finetune_models}
[ -z "${pretrain_set}" ] && pretrain_set=${train_set}
[ -z "${pretrain_valid_set}" ] && pretrain_valid_set=${valid_set//\{fold\}/${first_fold}}
if [[ ${pretrain_set} == *"{fold}"* ]] && [ -n "${pretrain_models}" ]; then
    log "Error: pre-training runs once, not per fold, but its set '${pretrain_set}' has {fold}" \
        "(the default is the train set); pass --pretrain-set with one set, e.g. all (every clip, labels unused)" \
        "or a set of unlabelled audio"
    exit 2
fi
if [ "${ngpu}" = auto ]; then
    ngpu=$(python3 -c 'import torch; print(min(torch.cuda.device_count(), 1))' 2>/dev/null || echo 0)
    log "--ngpu auto: ${ngpu} (GPUs found on this machine; pass --ngpu N to choose)"
fi
if ! [[ ${ngpu} =~ ^[0-9]+$ ]]; then
    log "Error: --ngpu must be a number of GPUs or auto, got '${ngpu}'"
    exit 2
fi
if ! [[ ${parallel_runs} =~ ^[1-9][0-9]*$ ]]; then
    log "Error: --parallel-runs must be a number of runs (1 or more), got '${parallel_runs}'"
    exit 2
fi
case ${feats_type} in
    fbank|raw) ;;
    *) log "Error: --feats-type must be fbank (log-mel per model) or raw (audio for both models), got '${feats_type}'"; exit 2 ;;
esac
for i in ${finetune_init}; do
    case ${i} in
        pretrained|random) ;;
        *) log "Error: --finetune-init takes pretrained, random or both, got '${i}'"; exit 2 ;;
    esac
done

# The fbank front end each model reads (design: BEATs and EAT fbank options differ).
fbank_kind() {
    case $1 in
        beats) echo beats ;;
        eat) echo eat ;;
        *) log "Error: unknown model '$1' (expected beats or eat)"; exit 1 ;;
    esac
}
# The dump directory (holding one dir per set) that stages 3-7 read for front end <kind>:
# dump/fbank_<kind> with --feats-type fbank, dump/raw (one dump for both models) with raw.
dump_dir() { if [ "${feats_type}" = raw ]; then echo dump/raw; else echo "dump/fbank_$1"; fi; }
# Replace {fold} in a set name.
fold_name() { local name=$1 fold=$2; echo "${name//\{fold\}/${fold}}"; }
fold_suffix() { [ "$1" = none ] && echo "" || echo "_fold$1"; }

# Every set a stage may read, with {fold} expanded.
all_sets() {
    local f s
    for f in ${fold_list}; do
        for s in ${pretrain_set} ${pretrain_valid_set} ${train_set} ${valid_set} ${test_sets}; do
            fold_name "${s}" "${f}"
        done
    done | sort -u
}
# Model kinds the requested stages need features for.
needed_kinds() {
    local m
    for m in ${pretrain_models} ${finetune_models}; do fbank_kind "${m}"; done | sort -u
}

# train <exp dir> <config> [--section.key value ...]: one training run through the engine,
# resumed if it was interrupted, skipped when its model.pt exists. The exp dir keeps a replayable run.sh.
train() {
    local expdir=$1 config=$2
    shift 2
    if [ -f "${expdir}/model.pt" ]; then
        log "${expdir}/model.pt exists: skipping (remove it to train again)"
        return 0
    fi
    if [ ! -f "${config}" ]; then
        log "Error: no config ${config}; create it or pass the option that names it (see --help)"
        exit 1
    fi
    mkdir -p "${expdir}"
    echo "# ${run_args}" > "${expdir}/run.sh"
    echo "cd $(pwd) && ${run_args} --stage ${stage_now} --stop-stage ${stage_now}" >> "${expdir}/run.sh"
    chmod +x "${expdir}/run.sh"
    local launch=(--ngpu "${ngpu}")
    [ "${ngpu}" -eq 0 ] && [ "${nproc}" -gt 1 ] && launch=(--nproc "${nproc}")
    # The trainer writes ${expdir}/train.log itself (appending across resumes); the job log is apart.
    log "Training ${expdir} (log: ${expdir}/train.log)"
    # shellcheck disable=SC2086
    ${train_cmd} --gpu "${ngpu}" "${expdir}/log/train.log" \
        python3 -m audiossl.bin.train --config "${config}" --output-dir "${expdir}" "${launch[@]}" "$@"
    [ -f "${expdir}/model.pt" ] || { log "Error: ${expdir} finished without model.pt; see ${expdir}/train.log"; exit 1; }
}

# in_parallel <name> <command...>: run an independent command (a fine-tuning, a probe) in the
# background, at most ${parallel_runs} at a time; with one, in the foreground. Each runs in its own
# process group, so INT or TERM stops it with everything it started. On CPU the runs share the cores:
# each gets cores/parallel_runs threads (unless OMP_NUM_THREADS is set). wait_parallel waits for
# all of them and stops the recipe, naming every run that failed.
# Pre-training (stages 3, 4) stays one run at a time: on 2 CPU cores BEATs' and EAT's side by side,
# one thread each, took as long as one after the other with two (their matrix products use both
# threads well), while the CPU recipes' fine-tuning pairs take 17-19% less. On a cluster, run the
# two pre-trainings as two calls (--pretrain-models beats, --pretrain-models eat).
bg_pids=()
bg_names=()
bg_failed=()
if [ "${parallel_runs}" -gt 1 ] && [ "${ngpu}" -eq 0 ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    run_threads=$(( $(nproc) / parallel_runs ))
    [ "${run_threads}" -ge 1 ] || run_threads=1
    log "--parallel-runs ${parallel_runs}: ${run_threads} thread(s) per run on $(nproc) cores"
fi
reap_parallel() {
    local i
    for i in "${!bg_pids[@]}"; do
        kill -0 "${bg_pids[$i]}" 2>/dev/null && continue
        wait "${bg_pids[$i]}" || bg_failed[i]=${bg_names[$i]}  # by launch order, not finish order
        unset "bg_pids[$i]" "bg_names[$i]"
    done
}
in_parallel() {
    local name=$1
    shift
    if [ "${parallel_runs}" -le 1 ]; then
        "$@"
        return
    fi
    reap_parallel
    while [ "${#bg_pids[@]}" -ge "${parallel_runs}" ]; do
        sleep 1
        reap_parallel
    done
    [ "${#bg_failed[@]}" -eq 0 ] || wait_parallel  # a run failed: start no more
    set -m
    (
        [ -z "${run_threads:-}" ] || export OMP_NUM_THREADS=${run_threads}
        "$@"
    ) &
    set +m
    bg_pids+=("$!")
    bg_names+=("${name}")
}
wait_parallel() {
    local i
    for i in "${!bg_pids[@]}"; do
        wait "${bg_pids[$i]}" || bg_failed[i]=${bg_names[$i]}
    done
    bg_pids=()
    bg_names=()
    if [ "${#bg_failed[@]}" -gt 0 ]; then
        log "Error: ${#bg_failed[@]} run(s) failed: ${bg_failed[*]} (each says why in its log/ dir)"
        exit 1
    fi
}
stop_parallel() {
    local p
    for p in "${bg_pids[@]}"; do kill -TERM -- "-${p}" 2>/dev/null || true; done
    log "Stopped"
    exit 130
}
[ "${parallel_runs}" -le 1 ] || trap stop_parallel INT TERM

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    stage_now=1
    log "Stage 1: data preparation: corpus -> data/"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
    for s in $(all_sets); do
        utils/validate_data_dir.sh "data/${s}"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ] && [ "${feats_type}" = raw ]; then
    stage_now=2
    kinds=$(needed_kinds | paste -sd ' ')
    log "Stage 2: raw audio (16 kHz FLAC): data/<set> -> dump/raw/<set>, fbank statistics for ${kinds:-no model}"
    mapfile -t sets < <(all_sets)
    # One dump for both models. Sets that share clips are encoded once, as their union in
    # dump/raw/_union (no statistics of its own); each set then takes its lines from it.
    from_dump=()
    if [ "${#sets[@]}" -gt 1 ]; then
        union=dump/raw/_union
        if [ ! -f "${union}/.done" ]; then
            utils/combine_data.sh --shared-ids true "${union}/data_dir" "${sets[@]/#/data/}"
            utils/make_raw.sh --nj "${nj}" --cmd "${feats_cmd}" --stats-kinds "" \
                --skip-bad "${skip_bad}" "${union}/data_dir" "${union}"
            touch "${union}/.done"
        fi
        from_dump=(--from-dump "${union}")
    fi
    for s in "${sets[@]}"; do
        out=dump/raw/${s}
        missing=""  # statistics a model asked for since the dump was made
        for kind in ${kinds}; do [ -f "${out}/stats_${kind}.json" ] || missing+=" ${kind}"; done
        if [ -f "${out}/.done" ] && [ -z "${missing}" ]; then
            log "${out} is done: skipping"
            continue
        fi
        utils/make_raw.sh --nj "${nj}" --cmd "${feats_cmd}" --stats-kinds "${kinds}" \
            --skip-bad "${skip_bad}" "${from_dump[@]}" "data/${s}" "${out}"
        touch "${out}/.done"
    done
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ] && [ "${feats_type}" = fbank ]; then
    stage_now=2
    log "Stage 2: fbank features: data/<set> -> dump/fbank_<kind>/<set>"
    mapfile -t sets < <(all_sets)
    for kind in $(needed_kinds); do
        # Sets that share clips (ESC-50's folds, a pre-training set holding the others) are extracted
        # once, as their union in dump/fbank_<kind>/_union; each set then takes its lines from it.
        from_dump=()
        if [ "${#sets[@]}" -gt 1 ]; then
            union=dump/fbank_${kind}/_union
            if [ ! -f "${union}/.done" ]; then
                utils/combine_data.sh --shared-ids true "${union}/data_dir" "${sets[@]/#/data/}"
                utils/make_fbank.sh --nj "${nj}" --cmd "${feats_cmd}" --kind "${kind}" \
                    --skip-bad "${skip_bad}" "${union}/data_dir" "${union}"
                touch "${union}/.done"
            fi
            from_dump=(--from-dump "${union}")
        fi
        for s in "${sets[@]}"; do
            out=dump/fbank_${kind}/${s}
            if [ -f "${out}/.done" ]; then
                log "${out} is done: skipping"
                continue
            fi
            utils/make_fbank.sh --nj "${nj}" --cmd "${feats_cmd}" --kind "${kind}" \
                --skip-bad "${skip_bad}" "${from_dump[@]}" "data/${s}" "${out}"
            touch "${out}/.done"
        done
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ] && [[ " ${pretrain_models} " == *" beats "* ]]; then
    stage_now=3
    log "Stage 3: BEATs rounds 1..${beats_rounds}: $(dump_dir beats) -> exp/beats_{tok,ssl}_r<r>"
    data_args=(--data.train "$(dump_dir beats)/${pretrain_set}" --data.valid "$(dump_dir beats)/${pretrain_valid_set}"
               --data.fbank_kind beats)
    for r in $(seq 1 "${beats_rounds}"); do
        if [ "${r}" -eq 1 ]; then
            # shellcheck disable=SC2086
            train exp/beats_tok_r1 "${beats_tokenizer_r1_config}" "${data_args[@]}" ${pretrain_args}
        else
            teacher=exp/beats_ssl_r$((r - 1))/model.pt
            config=${beats_tokenizer_config}
            if [ "${r}" -eq "${beats_rounds}" ] && [ -n "${beats_last_teacher}" ]; then
                teacher=${beats_last_teacher}
                config=${beats_tokenizer_ft_teacher_config}  # a fine-tuned teacher: its own LR
            fi
            # shellcheck disable=SC2086
            train "exp/beats_tok_r${r}" "${config}" "${data_args[@]}" \
                --model.teacher "${teacher}" ${pretrain_args}
        fi
        # shellcheck disable=SC2086
        train "exp/beats_ssl_r${r}" "${beats_ssl_config}" "${data_args[@]}" \
            --model.tokenizer "exp/beats_tok_r${r}/model.pt" ${pretrain_args}
    done
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ] && [[ " ${pretrain_models} " == *" eat "* ]]; then
    stage_now=4
    log "Stage 4: EAT pre-training: $(dump_dir eat) -> exp/eat_pretrain"
    # shellcheck disable=SC2086
    train exp/eat_pretrain "${eat_pretrain_config}" \
        --data.train "$(dump_dir eat)/${pretrain_set}" --data.valid "$(dump_dir eat)/${pretrain_valid_set}" \
        --data.fbank_kind eat ${pretrain_args}
fi

# The model.pt a fine-tuning run of <model> starts from.
init_model() {
    if [ -n "${pretrained}" ]; then
        echo "${pretrained}"
    elif [ "$1" = beats ]; then
        echo "${pretrain_exp}/beats_ssl_r${beats_rounds}/model.pt"
    else
        echo "${pretrain_exp}/eat_pretrain/model.pt"
    fi
}

# The exp-dir suffix of a fine-tuning or probe run from <init>: "" (pre-trained) or _scratch (random).
init_suffix() { [ "$1" = random ] && echo _scratch || echo ""; }

if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    stage_now=5
    log "Stage 5: fine-tuning: $(dump_dir "<kind>") + pre-trained model.pt -> exp/finetune_<model>[_scratch]"
    for m in ${finetune_models}; do
        init=$(init_model "${m}")
        [ -f "${init}" ] || { log "Error: ${init} not found: run the pre-training stage or pass --pretrained"; exit 1; }
        kind=$(fbank_kind "${m}")
        for i in ${finetune_init}; do
            # random: the from-scratch control, the same architecture (taken from ${init}) and config
            init_args=(--model.init "${init}")
            [ "${i}" = random ] && init_args+=(--model.init_weights false)
            for f in ${fold_list}; do
                expdir=exp/finetune_${m}$(init_suffix "${i}")$(fold_suffix "${f}")
                # shellcheck disable=SC2086
                in_parallel "${expdir}" train "${expdir}" "${finetune_config//\{model\}/${m}}" \
                    "${init_args[@]}" \
                    --data.train "$(dump_dir "${kind}")/$(fold_name "${train_set}" "${f}")" \
                    --data.valid "$(dump_dir "${kind}")/$(fold_name "${valid_set}" "${f}")" \
                    --data.fbank_kind "${kind}" ${finetune_args}
            done
        done
    done
    wait_parallel
fi

# cv_average <out dir> <score dir> ...: the mean (and std) of every metric over the folds.
cv_average() {
    local out=$1
    shift
    python3 -m audiossl.bin.score --cv "$@" --out "${out}"
    log "Cross-validation (${folds}) -> ${out}: $(cat "${out}/metrics.json")"
}

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    stage_now=6
    log "Stage 6: scoring: exp/finetune_<model>[_scratch]/model.pt -> exp/finetune_<model>[_scratch]/scores/<set>"
    for m in ${finetune_models}; do
        kind=$(fbank_kind "${m}")
        for i in ${finetune_init}; do
            tag=finetune_${m}$(init_suffix "${i}")
            cv_dirs=()
            for f in ${fold_list}; do
                expdir=exp/${tag}$(fold_suffix "${f}")
                for s in ${test_sets}; do
                    s=$(fold_name "${s}" "${f}")
                    out=${expdir}/scores/${s//\//_}
                    # shellcheck disable=SC2086
                    ${cuda_cmd} --gpu "$(min "${ngpu}" 1)" "${out}/score.log" \
                        python3 -m audiossl.bin.score --model "${expdir}/model.pt" \
                        --data "$(dump_dir "${kind}")/${s}" --out "${out}" ${score_args}
                    log "$(cat "${out}/metrics.json")"
                    cv_dirs+=("${out}")
                done
            done
            [ "${fold_list}" = none ] || cv_average "exp/${tag}_cv" "${cv_dirs[@]}"
        done
    done
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    stage_now=7
    log "Stage 7: linear probes and the trivial baseline: frozen encoders / log-mel statistics -> exp/probe_<model>[_scratch], exp/baseline_logmel"
    # probe <exp dir> <kind> <fold> [options for audiossl.bin.probe]: a linear classifier on fixed
    # features, selected on the valid set (or on a held-out part of train when the valid set is a
    # test set), scored on every test set.
    probe() {
        local expdir=$1 kind=$2 f=$3 s tests=()
        shift 3
        for s in ${test_sets}; do tests+=("$(dump_dir "${kind}")/$(fold_name "${s}" "${f}")"); done
        # shellcheck disable=SC2086
        ${cuda_cmd} --gpu "$(min "${ngpu}" 1)" "${expdir}/log/probe.log" \
            python3 -m audiossl.bin.probe "$@" --out "${expdir}" --fbank-kind "${kind}" \
            --train "$(dump_dir "${kind}")/$(fold_name "${train_set}" "${f}")" \
            --valid "$(dump_dir "${kind}")/$(fold_name "${valid_set}" "${f}")" --test "${tests[@]}" ${probe_args}
    }
    # the score dirs of a probe run, for the cross-validation average
    probe_scores() {
        local expdir=$1 f=$2 s
        for s in ${test_sets}; do s=$(fold_name "${s}" "${f}"); echo "${expdir}/scores/${s//\//_}"; done
    }
    tags=()  # every probe run's exp dir without its fold suffix
    for m in ${probe_models}; do
        init=$(init_model "${m}")
        [ -f "${init}" ] || { log "Error: ${init} not found: run the pre-training stage or pass --pretrained"; exit 1; }
        kind=$(fbank_kind "${m}")
        for i in ${finetune_init}; do
            tags+=("probe_${m}$(init_suffix "${i}")")
            for f in ${fold_list}; do
                expdir=exp/${tags[-1]}$(fold_suffix "${f}")
                in_parallel "${expdir}" probe "${expdir}" "${kind}" "${f}" --model "${init}" \
                    --random-init "$([ "${i}" = random ] && echo true || echo false)"
            done
        done
    done
    if "${baseline}"; then
        kind=$(needed_kinds | head -n 1)
        tags+=(baseline_logmel)
        for f in ${fold_list}; do
            expdir=exp/baseline_logmel$(fold_suffix "${f}")
            in_parallel "${expdir}" probe "${expdir}" "${kind}" "${f}" --baseline logmel
        done
    fi
    wait_parallel
    if [ "${fold_list}" != none ]; then
        for tag in "${tags[@]}"; do
            cv_dirs=()
            for f in ${fold_list}; do
                mapfile -t -O "${#cv_dirs[@]}" cv_dirs < <(probe_scores "exp/${tag}$(fold_suffix "${f}")" "${f}")
            done
            cv_average "exp/${tag}_cv" "${cv_dirs[@]}"
        done
    fi
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    stage_now=8
    log "Stage 8: results: exp/*/scores -> RESULTS.md, exp/*/plots"
    for d in exp/*/; do
        [ -f "${d}/metrics.jsonl" ] || [ -d "${d}/tensorboard" ] || continue
        python3 -m audiossl.bin.plot_training "${d%/}" --out "${d%/}/plots"
    done
    python3 -m audiossl.bin.make_results --exp exp --out RESULTS.md
    log "Wrote RESULTS.md"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
