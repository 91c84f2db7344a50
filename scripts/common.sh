#!/usr/bin/env bash
# Shared functions of the sweep scripts (base2new.sh, xd.sh, dg.sh, fewshot.sh); sourced, never run.
#
# A sweep first *plans* its runs (plan_run: what, output dir, the file whose existence means "done", the
# train.py arguments), then executes them in order (execute_plan): finished runs are skipped, one
# progress line is printed per run, the first failing run stops the sweep with its log path, and
# DRY_RUN=1 prints the commands instead of running them.

set -euo pipefail

CASPL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# The 11 base-to-new / few-shot datasets in the paper's order, the cross-dataset targets, the DG targets.
ALL_DATASETS="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"

# Print the comment block at the top of the calling script (its documentation) and exit.
caspl_usage() {
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$1"
    exit 0
}

# Absolute form of a path given relative to the caller's working directory.
_abspath() {
    case "$1" in
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$CALLER_PWD" "${1#./}" ;;
    esac
}

# Quote a word for the shell only when it needs it (readable DRY_RUN output that still pastes).
_quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:=+@%,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# Read the common environment variables, apply defaults, and move to the repository root.
caspl_setup() {
    CALLER_PWD="$(pwd)"
    TRAINER="${TRAINER:-CasPL_PromptSRC}"
    SEEDS="${SEEDS:-1 2 3}"
    DATA="${DATA:-./data}"
    OUT="${OUT:-output}"
    OPTS="${OPTS:-}"
    BOOST_OPTS="${BOOST_OPTS:-}"
    BOOST_CONFIG="${BOOST_CONFIG:-}" # empty: the authors' phase-1 config for the setting (plan_boost)
    BOOST_SEEDS="${BOOST_SEEDS:-1}"  # the phase-1 seed every phase-2 seed reads, or "each" (plan_boost)
    PYTHON="${PYTHON:-python}"
    DRY_RUN="${DRY_RUN:-0}"
    VERBOSE="${VERBOSE:-0}"
    GPU="${GPU:-}"
    LAUNCHER="${LAUNCHER:-local}"
    if [ "$CALLER_PWD" != "$CASPL_ROOT" ]; then
        # Paths the user gave stay relative to where the script was called from.
        DATA="$(_abspath "$DATA")"
        OUT="$(_abspath "$OUT")"
        case "$PYTHON" in */*) PYTHON="$(_abspath "$PYTHON")" ;; esac
    fi
    cd "$CASPL_ROOT"
    case "$LAUNCHER" in
        local) LAUNCH_PREFIX=() ;;
        torchrun)
            # One run over several GPUs (DDP); NPROC defaults to the number of ids in GPU.
            local n=1
            if [ -n "$GPU" ]; then n=$(awk -F, '{print NF}' <<<"$GPU"); fi
            NPROC="${NPROC:-$n}"
            LAUNCH_PREFIX=(-m torch.distributed.run --standalone "--nproc_per_node=$NPROC")
            ;;
        *) _die "LAUNCHER must be local or torchrun, got '$LAUNCHER'" ;;
    esac
    # OPTS / BOOST_OPTS are shell words (quotes respected), e.g. OPTS='INPUT.SIZE "(32, 32)"'.
    eval "EXTRA_OPTS=($OPTS)"
    eval "EXTRA_BOOST_OPTS=($BOOST_OPTS)"
    PLAN_WHAT=()
    PLAN_DIR=()
    PLAN_DONE=()
    PLAN_CMD=()
    PLAN_AFTER=()
    AFTER=-1
    BOOST_INDEX=-1
    MISSING_FILES=()
    JOBS="${JOBS:-1}"
    [[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || _die "JOBS must be a positive integer, got '$JOBS'"
    if [ "$JOBS" -gt 1 ]; then
        [ "$LAUNCHER" = local ] || _die "JOBS > 1 runs one process per GPU: it needs LAUNCHER=local"
        ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))) ||
            _die "JOBS > 1 needs bash >= 5.1 (wait -n -p)"
    fi
}

_die() {
    echo "ERROR: $*" >&2
    exit 2
}

# True for the cascaded trainers that need a phase-1 boosting run (CasPL_CoOp, ..., CasPL_ZS).
is_cascaded() {
    [[ "$1" == CasPL_* && "$1" != CasPL_Boost ]]
}

# The published config name of a trainer for a setting (b2n | xd | fewshot); CONFIG overrides it.
# CasPL_<Method>: the authors' phase-2 configs (github Martinser/CasPL, train_script/caspl_<method>/; CasPL_IVLP,
# which they did not release, follows their CasPL_PromptSRC); the base methods: their own published configs.
default_config() {
    local setting="$1" method="${2#CasPL_}"
    if [[ "$2" == CasPL_* ]]; then
        case "$method:$setting" in
            PromptSRC:xd | IVLP:xd) echo "vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3" ;;
            PromptSRC:fewshot | IVLP:fewshot) echo "vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12" ;;
            PromptSRC:* | IVLP:*) echo "vit_b16_c2_ep20_batch4_8+8ctx_l12" ;;
            MaPLe:xd) echo "vit_b16_c8_ep5_batch4_8ctx_cross_datasets_l12" ;;
            MaPLe:*) echo "vit_b16_c8_ep5_batch4_8ctx_l12" ;;
            CoCoOp:xd) echo "vit_b16_c4_ep10_batch1_ctxv1" ;;
            CoCoOp:*) echo "vit_b16_c8_ep10_batch1" ;;
            CoOp:xd) echo "vit_b16_ep10_ctxv1" ;;
            CoOp:*) echo "vit_b16_ep50" ;;
            *) echo "vit_b16" ;; # CasPL_ZS: the backbone config
        esac
        return
    fi
    case "$method:$setting" in
        PromptSRC:b2n | IVLP:b2n) echo "vit_b16_c2_ep20_batch4_4+4ctx" ;;
        PromptSRC:xd | IVLP:xd) echo "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets" ;;
        PromptSRC:fewshot | IVLP:fewshot) echo "vit_b16_c2_ep50_batch4_4+4ctx_few_shot" ;;
        MaPLe:xd) echo "vit_b16_c2_ep5_batch4_2ctx_cross_datasets" ;;
        MaPLe:*) echo "vit_b16_c2_ep5_batch4_2ctx" ;;
        CoCoOp:*) echo "vit_b16_c4_ep10_batch1_ctxv1" ;;
        # CoOp as CoCoOp's base-to-new table ran it ("a photo of a" init, 4 tokens); few-shot as CoOp's
        # paper (16 tokens, end, generic context); cross-dataset trains on ImageNet (50 epochs).
        CoOp:b2n) echo "vit_b16_ctxv1" ;;
        CoOp:fewshot) echo "vit_b16" ;;
        CoOp:xd) echo "vit_b16_ep50_ctxv1" ;;
        *) echo "vit_b16" ;; # ZeroshotCLIP, LinearProbeCLIP: the backbone config
    esac
}

# Remember whether the user chose CONFIG (then it is used as is) before the default fills it in.
default_config_unless_set() {
    if [ -n "${CONFIG:-}" ]; then
        CONFIG_DEFAULTED=0
    else
        CONFIG_DEFAULTED=1
        CONFIG="$(default_config "$1" "$TRAINER")"
    fi
}

# Per-dataset rules that the published scripts express by picking another YAML or option per dataset and shot
# count; here they are options on the one default config, so the output tree (and the tables) keep one
# config name per method. Only with the default CONFIG; OPTS still override.
# CoOp (its own scripts): ImageNet 50 epochs in every setting; few-shot: 50 epochs at 1 shot, 100 at 2 and 4
# shots, the config's 200 at 8 and 16. PromptSRC and CasPL_PromptSRC few-shot (PromptSRC's config comment;
# the authors' train_script/caspl_promptsrc/train_few_shot.py): GPA (45, 5) on StanfordCars, Flowers102,
# FGVCAircraft, DTD and EuroSAT, the config's (30, 30) on the others.
# Usage: protocol_opts <setting> <dataset> <shots>; result in PROTOCOL_OPTS.
protocol_opts() {
    PROTOCOL_OPTS=()
    [ "${CONFIG_DEFAULTED:-0}" = 1 ] || return 0
    if [ "$TRAINER" = CoOp ]; then
        local epochs=""
        if [ "$2" = imagenet ]; then
            epochs=50
        elif [ "$1" = fewshot ]; then
            case "$3" in 1) epochs=50 ;; 2 | 4) epochs=100 ;; esac
        fi
        if [ -n "$epochs" ]; then PROTOCOL_OPTS=(OPTIM.MAX_EPOCH "$epochs"); fi
    elif [ "${TRAINER#CasPL_}" = PromptSRC ] && [ "$1" = fewshot ]; then
        case "$2" in stanford_cars | oxford_flowers | fgvc_aircraft | dtd | eurosat)
            PROTOCOL_OPTS=(TRAINER.PROMPTSRC.GPA_MEAN 45 TRAINER.PROMPTSRC.GPA_STD 5)
            ;;
        esac
    fi
    return 0
}

# The YAML of trainer $1 with config $2: a path if $2 ends in .yaml, else configs/trainers/$1/$2.yaml
# (zero-shot and linear-probe trainers also look in CoOp's folder, as CoOp's zeroshot script does).
config_file() {
    local trainer="$1" config="$2"
    case "$config" in *.yaml)
        # A relative path is taken from where the script was called (the scripts run from the repo root).
        if [[ "$config" != /* && -f "$CALLER_PWD/$config" ]]; then config="$(_abspath "$config")"; fi
        printf '%s' "$config"
        return
        ;;
    esac
    local path="configs/trainers/$trainer/$config.yaml"
    if [ ! -f "$path" ]; then
        case "$trainer" in ZeroshotCLIP | CasPL_ZS | LinearProbeCLIP)
            [ -f "configs/trainers/CoOp/$config.yaml" ] && path="configs/trainers/CoOp/$config.yaml"
            ;;
        esac
    fi
    printf '%s' "$path"
}

# The name a config gets in output paths: its file name without .yaml.
config_name() {
    local name="${1##*/}"
    printf '%s' "${name%.yaml}"
}

# Remember a file a planned run needs; checked once the plan is complete.
need_file() {
    [ -f "$1" ] || MISSING_FILES+=("$1")
}

# Stop before running anything when a config file is missing (a dry run only warns).
check_files() {
    [ "${#MISSING_FILES[@]}" -eq 0 ] && return 0
    local f listed=()
    for f in "${MISSING_FILES[@]}"; do
        case " ${listed[*]-} " in *" $f "*) continue ;; esac
        listed+=("$f")
        local dir avail
        dir="$(dirname "$f")"
        avail="$(ls "$dir" 2>/dev/null | tr '\n' ' ' || true)"
        echo "missing config file: $f (in $dir/: ${avail:-nothing})" >&2
    done
    if [ "$DRY_RUN" = "1" ]; then
        echo "WARNING: DRY_RUN continues despite the missing files above" >&2
        return 0
    fi
    _die "config files missing (set CONFIG / BOOST_CONFIG / TRAINER, or add the YAML files)"
}

# train.py arguments shared by every run: root, seed, trainer, dataset and trainer configs, output dir.
# Usage: train_args <trainer> <config yaml> <dataset> <seed> <output dir>; result in TRAIN_ARGS.
train_args() {
    need_file "$2"
    need_file "configs/datasets/$3.yaml"
    TRAIN_ARGS=(train.py --root "$DATA" --seed "$4" --trainer "$1"
        --dataset-config-file "configs/datasets/$3.yaml" --config-file "$2" --output-dir "$5")
}

# Add one run to the plan; it starts only after run number $AFTER (an index, -1: none) has finished.
# Usage: plan_run <what> <output dir> <done file> <train.py args...>; sets LAST_INDEX.
plan_run() {
    local what="$1" dir="$2" done_file="$3"
    shift 3
    local cmd word
    cmd="$(_quote "$PYTHON")"
    for word in "${LAUNCH_PREFIX[@]+"${LAUNCH_PREFIX[@]}"}" "$@"; do
        cmd+=" $(_quote "$word")"
    done
    PLAN_WHAT+=("$what")
    PLAN_DIR+=("$dir")
    PLAN_DONE+=("$done_file")
    PLAN_CMD+=("$cmd")
    PLAN_AFTER+=("$AFTER")
    LAST_INDEX=$((${#PLAN_CMD[@]} - 1))
}

# A planned command with the GPUs it may see.
_with_gpu() {
    if [ -n "$1" ]; then printf 'CUDA_VISIBLE_DEVICES=%s %s' "$(_quote "$1")" "$2"; else printf '%s' "$2"; fi
}

# Plan the phase-1 boosting run of dataset $1 for phase-2 seed $2 (once; shared by every CasPL_* trainer) and
# set BOOST_FILE to the boost_prompts.pt that phase 2 reads. BOOST_SEEDS=1 (default, as the authors' launch):
# one boosting run per dataset with seed 1, read by every phase-2 seed; BOOST_SEEDS=each: one per seed;
# BOOST_SEEDS=<n>: one with seed n. Without BOOST_CONFIG the config is the authors'
# for the setting (github Martinser/CasPL, train_script/): cross-dataset / DG boost on the source with 4+4
# tokens at depth 1 (CoOp, MaPLe, ZS) or 3 (CoCoOp; PromptSRC and IVLP, whose phase 2 prompts 3 layers),
# ImageNet otherwise with batch 128, every other dataset with 8+8 tokens at depth 12, batch 4.
plan_boost() {
    local dataset="$1" seed="$2" config="$BOOST_CONFIG"
    case "$BOOST_SEEDS" in
        each) ;;
        *[!0-9]* | "") _die "BOOST_SEEDS must be a seed number or 'each', got '$BOOST_SEEDS'" ;;
        *) seed="$BOOST_SEEDS" ;;
    esac
    if [ -z "$config" ]; then
        case "${SWEEP_NAME:-}:$dataset" in
            xd:* | dg:*)
                case "${TRAINER#CasPL_}" in
                    CoOp | MaPLe | ZS) config=vit_b16_l14_ep20_batch128_4+4ctx_l1 ;;
                    *) config=vit_b16_l14_ep20_batch128_4+4ctx_l3 ;;
                esac
                ;;
            *:imagenet) config=vit_b16_l14_ep20_batch128_8+8ctx_l12 ;;
            *) config=vit_b16_l14_ep20_8+8ctx_l12 ;;
        esac
    fi
    local cfg
    cfg="$(config_file CasPL_Boost "$config")"
    local dir
    dir="$OUT/boost/$dataset/$(config_name "$cfg")/seed$seed"
    BOOST_FILE="$dir/boost_prompts.pt"
    local i
    for i in "${!PLAN_DIR[@]}"; do
        if [ "${PLAN_DIR[$i]}" = "$dir" ]; then
            BOOST_INDEX=$i
            return 0
        fi
    done
    train_args CasPL_Boost "$cfg" "$dataset" "$seed" "$dir"
    AFTER=-1
    plan_run "boost $dataset seed$seed" "$dir" "$BOOST_FILE" "${TRAIN_ARGS[@]}" \
        "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}" "${EXTRA_BOOST_OPTS[@]+"${EXTRA_BOOST_OPTS[@]}"}"
    BOOST_INDEX=$LAST_INDEX
}

# Options every phase-2 run of a cascaded trainer gets (the boosting prompts of phase 1); also sets
# AFTER to the boosting run, which a phase-2 training run waits for.
cascade_opts() {
    CASCADE_OPTS=()
    AFTER=-1
    if is_cascaded "$TRAINER"; then
        CASCADE_OPTS=(TRAINER.CASPL.BOOST_PROMPTS "$BOOST_FILE")
        AFTER=$BOOST_INDEX
    fi
}

_hms() {
    local s="$1"
    printf '%d:%02d:%02d' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
}

# Tell which run failed, with the end of its console output and its log path.
_report_failure() {
    local i="$1" rc="$2" n="${#PLAN_CMD[@]}" dir="${PLAN_DIR[$1]}"
    echo "---- last lines of $dir/console.txt" >&2
    tail -n 20 "$dir/console.txt" >&2 || true
    echo "----" >&2
    echo "run $((i + 1))/$n failed: ${PLAN_WHAT[$i]}; log: $dir/log.txt (console: $dir/console.txt)" >&2
    if [ "$rc" -eq 0 ]; then echo "it exited 0 but did not write ${PLAN_DONE[$i]}" >&2; fi
}

# Run (or print) every planned run in order; skip the finished ones; stop at the first failure.
execute_plan() {
    check_files
    if [ "$JOBS" -gt 1 ] && [ "$DRY_RUN" != "1" ]; then
        execute_parallel
        return
    fi
    local n="${#PLAN_CMD[@]}" start=$SECONDS i
    echo "== $SWEEP_NAME: $n runs (trainer $TRAINER, output $OUT)"
    for i in "${!PLAN_CMD[@]}"; do
        local k=$((i + 1)) what="${PLAN_WHAT[$i]}" dir="${PLAN_DIR[$i]}" done_file="${PLAN_DONE[$i]}"
        if [ -f "$done_file" ]; then
            echo "[$k/$n] $what: done already ($done_file), skipped | elapsed $(_hms $((SECONDS - start)))"
            continue
        fi
        if [ "$DRY_RUN" = "1" ]; then
            echo "[$k/$n] $what -> $dir"
            _with_gpu "$GPU" "${PLAN_CMD[$i]}"
            echo
            continue
        fi
        mkdir -p "$dir"
        printf '[%d/%d] %s -> %s ... ' "$k" "$n" "$what" "$dir"
        local t0=$SECONDS rc=0
        # train.py writes log.txt itself; console.txt also catches what happens before its logger starts.
        if [ "$VERBOSE" = "1" ]; then
            echo
            (eval "$(_with_gpu "$GPU" "${PLAN_CMD[$i]}")") 2>&1 | tee "$dir/console.txt" || rc=$?
        else
            (eval "$(_with_gpu "$GPU" "${PLAN_CMD[$i]}")") >"$dir/console.txt" 2>&1 || rc=$?
        fi
        if [ "$rc" -ne 0 ] || [ ! -f "$done_file" ]; then
            echo "FAILED (exit $rc)"
            _report_failure "$i" "$rc"
            exit 1
        fi
        echo "ok in $(_hms $((SECONDS - t0))) | elapsed $(_hms $((SECONDS - start)))"
    done
    echo "== $SWEEP_NAME: finished in $(_hms $((SECONDS - start)))"
}

# Run the plan JOBS at a time, each run on one GPU of GPU (one slot per id; CPU slots when GPU is empty),
# a run starting once the run it waits for (AFTER) has finished. After a failure nothing new starts; the
# runs under way finish, then the sweep stops with the failed run's log path.
execute_parallel() {
    local n="${#PLAN_CMD[@]}" start=$SECONDS i
    local -a slots state run_start
    if [ -n "$GPU" ]; then
        IFS=, read -ra slots <<<"$GPU"
        [ "${#slots[@]}" -ge "$JOBS" ] || _die "JOBS=$JOBS needs as many GPU ids, got GPU=$GPU"
        slots=("${slots[@]:0:$JOBS}")
    else
        for ((i = 0; i < JOBS; i++)); do slots+=(""); done
    fi
    local -A pid_run pid_slot
    local free=("${!slots[@]}") failed=-1 failed_rc=0 running=0
    for i in "${!PLAN_CMD[@]}"; do state[i]=pending; done
    echo "== $SWEEP_NAME: $n runs, $JOBS at a time (trainer $TRAINER, output $OUT)"
    while :; do
        for i in "${!PLAN_CMD[@]}"; do
            [ "$failed" -ge 0 ] && break
            [ "${state[i]}" = pending ] || continue
            local dep="${PLAN_AFTER[i]}"
            if [ "$dep" -ge 0 ] && [ "${state[dep]}" != ok ] && [ "${state[dep]}" != skipped ]; then continue; fi
            if [ -f "${PLAN_DONE[i]}" ]; then
                state[i]=skipped
                echo "[$((i + 1))/$n] ${PLAN_WHAT[i]}: done already (${PLAN_DONE[i]}), skipped | elapsed $(_hms $((SECONDS - start)))"
                continue
            fi
            [ "${#free[@]}" -gt 0 ] || break
            local slot="${free[0]}"
            free=("${free[@]:1}")
            mkdir -p "${PLAN_DIR[i]}"
            (eval "$(_with_gpu "${slots[slot]}" "${PLAN_CMD[i]}")") >"${PLAN_DIR[i]}/console.txt" 2>&1 &
            pid_run[$!]=$i
            pid_slot[$!]=$slot
            state[i]=running
            run_start[i]=$SECONDS
            running=$((running + 1))
        done
        [ "$running" -gt 0 ] || break
        local pid rc=0
        wait -n -p pid || rc=$?
        i="${pid_run[$pid]}"
        local done_slot="${pid_slot[$pid]}" where=""
        free+=("$done_slot")
        unset "pid_run[$pid]" "pid_slot[$pid]"
        running=$((running - 1))
        if [ -n "${slots[done_slot]}" ]; then where=" on GPU ${slots[done_slot]}"; fi
        if [ "$rc" -eq 0 ] && [ -f "${PLAN_DONE[i]}" ]; then
            state[i]=ok
            echo "[$((i + 1))/$n] ${PLAN_WHAT[i]} -> ${PLAN_DIR[i]}$where: ok in $(_hms $((SECONDS - run_start[i]))) | elapsed $(_hms $((SECONDS - start)))"
        else
            state[i]=failed
            echo "[$((i + 1))/$n] ${PLAN_WHAT[i]} -> ${PLAN_DIR[i]}$where: FAILED (exit $rc)"
            if [ "$failed" -lt 0 ]; then
                failed=$i
                failed_rc=$rc
                [ "$running" -gt 0 ] && echo "waiting for the $running run(s) under way, starting no new one"
            fi
        fi
    done
    if [ "$failed" -ge 0 ]; then
        _report_failure "$failed" "$failed_rc"
        exit 1
    fi
    echo "== $SWEEP_NAME: finished in $(_hms $((SECONDS - start)))"
}

# Cross-dataset / domain-generalization sweep: train once per seed on $SOURCE (all classes, $SHOTS shots)
# at $OUT/xd/train/<source>/..., then evaluate that model on each target at $OUT/xd/test/<target>/....
# xd.sh and dg.sh share the source model (same trainer, config and seed) and this tree.
cross_sweep() {
    SOURCE="${SOURCE:-imagenet}"
    DATASETS="${DATASETS:-$1}"
    SHOTS="${SHOTS:-16}"
    default_config_unless_set xd
    [ "$TRAINER" = CasPL_Boost ] && _die "TRAINER=CasPL_Boost is phase 1 only; pick a phase-2 trainer"
    local cfg_file cfg_name seed target
    cfg_file="$(config_file "$TRAINER" "$CONFIG")"
    cfg_name="$(config_name "$cfg_file")"
    for seed in $SEEDS; do
        # The boosting phase sees the source's unlabeled images only (the targets stay unseen).
        if is_cascaded "$TRAINER"; then plan_boost "$SOURCE" "$seed"; fi
        cascade_opts
        local train_dir="$OUT/xd/train/$SOURCE/shots_$SHOTS/$TRAINER/$cfg_name/seed$seed"
        train_args "$TRAINER" "$cfg_file" "$SOURCE" "$seed" "$train_dir"
        protocol_opts xd "$SOURCE" "$SHOTS"
        plan_run "train $SOURCE seed$seed $TRAINER" "$train_dir" "$train_dir/results.json" \
            "${TRAIN_ARGS[@]}" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES all \
            "${PROTOCOL_OPTS[@]+"${PROTOCOL_OPTS[@]}"}" "${CASCADE_OPTS[@]+"${CASCADE_OPTS[@]}"}" "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}"
        AFTER=$LAST_INDEX # the targets are evaluated once the source model is trained
        for target in $DATASETS; do
            local test_dir="$OUT/xd/test/$target/shots_$SHOTS/$TRAINER/$cfg_name/seed$seed"
            train_args "$TRAINER" "$cfg_file" "$target" "$seed" "$test_dir"
            plan_run "test $target seed$seed $TRAINER" "$test_dir" "$test_dir/results.json" \
                "${TRAIN_ARGS[@]}" --eval-only --model-dir "$train_dir" \
                "${CASCADE_OPTS[@]+"${CASCADE_OPTS[@]}"}" "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}"
        done
    done
    execute_plan
}
