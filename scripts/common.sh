#!/usr/bin/env bash
# Shared functions of the sweep scripts (base2new.sh, xd.sh, dg.sh, fewshot.sh); sourced, never run.
#
# A sweep first *plans* its runs (plan_run: what, output dir, the train.py arguments; a run is done when
# its results.json exists), then executes them in order (execute_plan): finished runs are skipped, one
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
        slurm)
            # Each run is one Slurm job, with SLURM_GPUS_PER_JOB GPUs (torchrun inside the job when > 1).
            SLURM_GPUS_PER_JOB="${SLURM_GPUS_PER_JOB:-1}"
            [[ "$SLURM_GPUS_PER_JOB" =~ ^[0-9]+$ ]] ||
                _die "SLURM_GPUS_PER_JOB must be a number of GPUs (0: CPU jobs), got '$SLURM_GPUS_PER_JOB'"
            [ -z "$GPU" ] || _die "GPU is for local runs; with LAUNCHER=slurm Slurm gives each job its GPUs" \
                "(SLURM_GPUS_PER_JOB)"
            NPROC="${NPROC:-$SLURM_GPUS_PER_JOB}"
            LAUNCH_PREFIX=()
            if [ "$NPROC" -gt 1 ]; then
                LAUNCH_PREFIX=(-m torch.distributed.run --standalone "--nproc_per_node=$NPROC")
            fi
            split_words SLURM_EXTRA "${SLURM_EXTRA:-}"
            SBATCH_EXTRA=("${SPLIT_WORDS[@]+"${SPLIT_WORDS[@]}"}")
            ;;
        *) _die "LAUNCHER must be local, torchrun or slurm, got '$LAUNCHER'" ;;
    esac
    # OPTS / BOOST_OPTS are words with quotes respected, e.g. OPTS='INPUT.SIZE "(32, 32)"'; never evaluated.
    split_words OPTS "$OPTS"
    EXTRA_OPTS=("${SPLIT_WORDS[@]+"${SPLIT_WORDS[@]}"}")
    split_words BOOST_OPTS "$BOOST_OPTS"
    EXTRA_BOOST_OPTS=("${SPLIT_WORDS[@]+"${SPLIT_WORDS[@]}"}")
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

# Split $2 into the words of SPLIT_WORDS, honouring single / double quotes and backslashes as the shell
# does, but with no expansion at all: `$(...)`, backticks, `$VAR` and globs stay literal text ($1 names the
# variable in errors). xargs does the quote handling, so nothing is ever evaluated.
split_words() {
    SPLIT_WORDS=()
    [[ "$2" =~ ^[[:space:]]*$ ]] && return 0
    [[ "$2" != *$'\n'* ]] || _die "$1 must be on one line ($1='$2')"
    local out word
    out="$(printf '%s' "$2" | xargs printf '%s\n' 2>/dev/null)" ||
        _die "$1 cannot be split into words (a quote without its closing quote?): $1='$2'"
    while IFS= read -r word; do SPLIT_WORDS+=("$word"); done <<<"$out"
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
# A run is finished when <output dir>/results.json exists (train.py writes it last): one definition for
# every kind of run, phase-1 boosting included (its boost_prompts.pt alone is not "finished"). The third
# argument is not used (callers pass the file their run produces; kept so their calls stay as they are).
# Usage: plan_run <what> <output dir> <unused> <train.py args...>; sets LAST_INDEX.
plan_run() {
    local what="$1" dir="$2" done_file="$2/results.json"
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

# Runs under way (their pids) and the signal that asked the sweep to stop (empty while none did).
RUNNING_PIDS=()
STOP_SIGNAL=""

# Start run $1 in the background with the GPUs $2 ("": unchanged): its process replaces the subshell
# (exec), so RUN_PID is the run itself (python or torchrun) and a signal sent to it reaches it.
_start_run() {
    local i="$1" cmd="exec ${PLAN_CMD[$1]}" dir="${PLAN_DIR[$1]}"
    if [ -n "$2" ]; then cmd="CUDA_VISIBLE_DEVICES=$(_quote "$2") $cmd"; fi
    mkdir -p "$dir"
    # train.py writes log.txt itself; console.txt also catches what happens before its logger starts.
    if [ "$VERBOSE" = "1" ]; then
        (eval "$cmd") > >(tee "$dir/console.txt") 2>&1 &
    else
        (eval "$cmd") >"$dir/console.txt" 2>&1 &
    fi
    RUN_PID=$!
    RUNNING_PIDS+=("$RUN_PID")
}

_forget_pid() {
    local pid kept=()
    for pid in "${RUNNING_PIDS[@]+"${RUNNING_PIDS[@]}"}"; do [ "$pid" = "$1" ] || kept+=("$pid"); done
    RUNNING_PIDS=("${kept[@]+"${kept[@]}"}")
}

# Wait for run process $1 to end, also when a signal interrupts the wait; its exit status in RUN_RC.
_wait_run() {
    while :; do
        if wait "$1"; then RUN_RC=0; else RUN_RC=$?; fi
        kill -0 "$1" 2>/dev/null || break # ended (a signal only interrupted the wait otherwise)
    done
    _forget_pid "$1"
}

# SIGINT (Ctrl-C), SIGTERM, SIGHUP: forward SIGTERM to the runs under way (torchrun stops its workers on
# SIGTERM) and let the loops wait for them; a second signal kills them (SIGKILL). With no run under way
# the sweep stops at once.
_on_signal() {
    if [ "${#RUNNING_PIDS[@]}" -eq 0 ]; then
        STOP_SIGNAL="$1"
        _stopped_exit
    fi
    if [ -n "$STOP_SIGNAL" ]; then
        echo "SIG$1 again: killing the run(s) under way (SIGKILL)" >&2
        kill -KILL "${RUNNING_PIDS[@]}" 2>/dev/null || true
        return 0
    fi
    STOP_SIGNAL="$1"
    echo >&2
    echo "SIG$1: stopping the ${#RUNNING_PIDS[@]} run(s) under way (SIGTERM sent) and waiting for them" \
        "to end (another Ctrl-C kills them); nothing new starts" >&2
    kill -TERM "${RUNNING_PIDS[@]}" 2>/dev/null || true
}

_stopped_exit() {
    echo "sweep stopped by SIG$STOP_SIGNAL: the runs without results.json are redone by the next sweep" \
        "(resuming from their last saved epoch)" >&2
    case "$STOP_SIGNAL" in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
}

_trap_signals() {
    trap '_on_signal INT' INT
    trap '_on_signal TERM' TERM
    trap '_on_signal HUP' HUP
}

# The candidate closest to $1 by edit distance (case-insensitive) among the lines of stdin, if close.
_closest() {
    awk -v w="$1" '
        function dist(a, b,   i, j, la, lb, d, cost, best) {
            la = length(a); lb = length(b)
            for (i = 0; i <= la; i++) d[i, 0] = i
            for (j = 0; j <= lb; j++) d[0, j] = j
            for (i = 1; i <= la; i++)
                for (j = 1; j <= lb; j++) {
                    cost = substr(a, i, 1) != substr(b, j, 1)
                    best = d[i - 1, j] + 1
                    if (d[i, j - 1] + 1 < best) best = d[i, j - 1] + 1
                    if (d[i - 1, j - 1] + cost < best) best = d[i - 1, j - 1] + cost
                    d[i, j] = best
                }
            return d[la, lb]
        }
        NF { x = dist(tolower(w), tolower($0)); if (found == "" || x < bestx) { found = $0; bestx = x } }
        END { if (found != "" && bestx <= 2 + int(length(w) / 4)) print found }'
}

# Stop with "unknown <kind> '<name>' (did you mean ...?)" unless $2 is one of the lines of $3 (from $4).
_check_name() {
    local kind="$1" name="$2" known="$3" hint
    grep -qxF -- "$name" <<<"$known" && return 0
    hint="$(_closest "$name" <<<"$known")"
    _die "unknown $kind '$name'${hint:+ (did you mean $hint?)}; known $kind names ($4): $(tr '\n' ' ' <<<"$known")"
}

# Check TRAINER, the datasets (DATASETS, SOURCE) and DATA before anything runs or is submitted, so a typo
# stops the sweep at once instead of failing its first run. A missing DATA folder only warns in a dry run;
# the Synthetic dataset creates itself there.
check_inputs() {
    local trainers name real=0
    # Registered trainers: @TRAINER_REGISTRY.register() classes and the cascaded(...) CasPL versions.
    trainers="$(sed -n -e '/@TRAINER_REGISTRY.register/{n;s/^class \([A-Za-z0-9_]*\).*/\1/p;}' \
        -e 's/^\([A-Za-z0-9_]*\) = cascaded(.*/\1/p' trainers/*.py 2>/dev/null | sort -u)"
    if [ -n "$trainers" ]; then _check_name trainer "$TRAINER" "$trainers" "trainers/*.py"; fi
    local datasets
    datasets="$(ls configs/datasets 2>/dev/null | sed -n 's/\.yaml$//p')"
    for name in ${DATASETS:-} ${SOURCE:-}; do
        _check_name dataset "$name" "$datasets" "configs/datasets/*.yaml"
        if [ "$name" != synthetic ]; then real=1; fi
    done
    if [ "$real" = 1 ] && [ ! -d "$DATA" ]; then
        local why="DATA=$DATA is not a folder (the datasets' root: see the README's data section)"
        if [ "$DRY_RUN" = "1" ] || [ "${CASPL_PLAN_TSV:-0}" = "1" ]; then
            echo "WARNING: $why" >&2
        else
            _die "$why"
        fi
    fi
}

# The plan for tools/sweep_status.py (CASPL_PLAN_TSV=1): one line per run, "<what> TAB <absolute output
# folder> TAB <index of the run it needs, -1: none>"; nothing is run or checked.
_print_plan_tsv() {
    local i
    for i in "${!PLAN_CMD[@]}"; do
        printf '%s\t%s\t%s\n' "${PLAN_WHAT[$i]}" "$(_job_dir "${PLAN_DIR[$i]}")" "${PLAN_AFTER[$i]}"
    done
}

# Run (or print) every planned run in order; skip the finished ones; stop at the first failure.
execute_plan() {
    check_inputs
    if [ "${CASPL_PLAN_TSV:-0}" = "1" ]; then
        _print_plan_tsv
        return
    fi
    check_files
    if [ "$LAUNCHER" = slurm ]; then
        execute_slurm
        return
    fi
    if [ "$JOBS" -gt 1 ] && [ "$DRY_RUN" != "1" ]; then
        execute_parallel
        return
    fi
    _trap_signals
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
        printf '[%d/%d] %s -> %s ... ' "$k" "$n" "$what" "$dir"
        if [ "$VERBOSE" = "1" ]; then echo; fi
        local t0=$SECONDS
        _start_run "$i" "$GPU"
        _wait_run "$RUN_PID"
        if [ -n "$STOP_SIGNAL" ]; then
            echo "stopped (exit $RUN_RC)"
            _stopped_exit
        fi
        if [ "$RUN_RC" -ne 0 ] || [ ! -f "$done_file" ]; then
            echo "FAILED (exit $RUN_RC)"
            _report_failure "$i" "$RUN_RC"
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
    _trap_signals
    echo "== $SWEEP_NAME: $n runs, $JOBS at a time (trainer $TRAINER, output $OUT)"
    while :; do
        for i in "${!PLAN_CMD[@]}"; do
            [ "$failed" -ge 0 ] || [ -n "$STOP_SIGNAL" ] && break
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
            _start_run "$i" "${slots[slot]}"
            pid_run[$RUN_PID]=$i
            pid_slot[$RUN_PID]=$slot
            state[i]=running
            run_start[i]=$SECONDS
            running=$((running + 1))
        done
        [ "$running" -gt 0 ] || break
        local pid="" rc=0
        wait -n -p pid || rc=$?
        [ -n "${pid:-}" ] || continue # a signal interrupted the wait: the trap forwarded it
        i="${pid_run[$pid]}"
        local done_slot="${pid_slot[$pid]}" where=""
        free+=("$done_slot")
        unset "pid_run[$pid]" "pid_slot[$pid]"
        _forget_pid "$pid"
        running=$((running - 1))
        if [ -n "${slots[done_slot]}" ]; then where=" on GPU ${slots[done_slot]}"; fi
        if [ "$rc" -eq 0 ] && [ -f "${PLAN_DONE[i]}" ]; then
            state[i]=ok
            echo "[$((i + 1))/$n] ${PLAN_WHAT[i]} -> ${PLAN_DIR[i]}$where: ok in $(_hms $((SECONDS - run_start[i]))) | elapsed $(_hms $((SECONDS - start)))"
        elif [ -n "$STOP_SIGNAL" ]; then
            state[i]=stopped
            echo "[$((i + 1))/$n] ${PLAN_WHAT[i]} -> ${PLAN_DIR[i]}$where: stopped (exit $rc)"
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
    if [ -n "$STOP_SIGNAL" ]; then _stopped_exit; fi
    if [ "$failed" -ge 0 ]; then
        _report_failure "$failed" "$failed_rc"
        exit 1
    fi
    echo "== $SWEEP_NAME: finished in $(_hms $((SECONDS - start)))"
}

# The sweep's Slurm jobs that are queued or running, by output folder (each job's comment is its run's
# output folder): LIVE_JOB[<dir>]="<job id> <state>". Asked from squeue once per submission.
_slurm_live_jobs() {
    declare -gA LIVE_JOB=()
    local out id state comment
    if ! out="$(squeue -h -u "$(id -un)" -o '%i|%T|%k' 2>&1)"; then
        local why="squeue failed, so the jobs already queued are not known (is Slurm reachable from here?)"
        [ "$DRY_RUN" = "1" ] || _die "$why: $out"
        echo "note: $why; the dry run assumes none" >&2
        return 0
    fi
    while IFS='|' read -r id state comment; do
        if [ -n "$comment" ]; then LIVE_JOB["$comment"]="$id $state"; fi
    done <<<"$out"
}

# The absolute form of run folder $1 (relative ones are under the repository root, where the sweep runs):
# the job's comment, which tells a resubmission and tools/sweep_status.py which folder a job is for.
_job_dir() {
    case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$CASPL_ROOT" "${1#./}" ;; esac
}

# The sbatch script of run $1: Slurm options, then the run, which first checks that it is not finished.
_sbatch_script() {
    local i="$1" dir
    dir="$(_job_dir "${PLAN_DIR[$1]}")"
    echo "#!/bin/bash"
    echo "#SBATCH --job-name=caspl-$SWEEP_NAME"
    echo "#SBATCH --comment=$(_quote "$dir")"
    echo "#SBATCH --output=$(_quote "$dir/console.txt")"
    echo "#SBATCH --nodes=1"
    echo "#SBATCH --ntasks=1"
    echo "#SBATCH --kill-on-invalid-dep=yes"
    if [ -n "${SLURM_PARTITION:-}" ]; then echo "#SBATCH --partition=$(_quote "$SLURM_PARTITION")"; fi
    if [ -n "${SLURM_ACCOUNT:-}" ]; then echo "#SBATCH --account=$(_quote "$SLURM_ACCOUNT")"; fi
    if [ -n "${SLURM_TIME:-}" ]; then echo "#SBATCH --time=$(_quote "$SLURM_TIME")"; fi
    if [ "$SLURM_GPUS_PER_JOB" -gt 0 ]; then echo "#SBATCH --gres=gpu:$SLURM_GPUS_PER_JOB"; fi
    echo "# ${PLAN_WHAT[$i]}: run $((i + 1))/${#PLAN_CMD[@]} of scripts/$SWEEP_NAME.sh"
    echo "set -eu"
    echo "cd $(_quote "$CASPL_ROOT")"
    echo 'echo "== Slurm job $SLURM_JOB_ID on $(hostname) started $(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"'
    echo "if [ -f $(_quote "${PLAN_DONE[$i]}") ]; then echo 'finished already: nothing to do'; exit 0; fi"
    echo "exec ${PLAN_CMD[$i]}"
}

# Submit every unfinished planned run as one Slurm job (DRY_RUN=1: print the sbatch commands and scripts).
# A run waits for the run it needs (AFTER) with --dependency=afterok, unless that one is finished; a run
# whose folder already has a queued or running job of the sweep is not submitted again (that job is
# waited for instead); a job whose dependency failed is cancelled by Slurm (--kill-on-invalid-dep).
execute_slurm() {
    local n="${#PLAN_CMD[@]}" i submitted=0 live=0 finished=0
    local -a job # per run: its job id ("" for a finished run)
    if [ "$DRY_RUN" != "1" ]; then
        command -v sbatch >/dev/null && command -v squeue >/dev/null ||
            _die "LAUNCHER=slurm needs sbatch and squeue on PATH (submit from the cluster's login node)"
    fi
    declare -gA LIVE_JOB=()
    if command -v squeue >/dev/null; then _slurm_live_jobs; fi
    echo "== $SWEEP_NAME: $n runs as Slurm jobs (trainer $TRAINER, output $OUT)"
    for i in "${!PLAN_CMD[@]}"; do
        local k=$((i + 1)) what="${PLAN_WHAT[$i]}" dir="${PLAN_DIR[$i]}" dep="${PLAN_AFTER[$i]}"
        job[i]=""
        if [ -f "${PLAN_DONE[$i]}" ]; then
            echo "[$k/$n] $what: done already (${PLAN_DONE[$i]}), skipped"
            finished=$((finished + 1))
            continue
        fi
        local key
        key="$(_job_dir "$dir")"
        if [ -n "${LIVE_JOB[$key]:-}" ]; then
            local id_state=(${LIVE_JOB[$key]})
            job[i]="${id_state[0]}"
            echo "[$k/$n] $what: $(tr 'A-Z' 'a-z' <<<"${id_state[1]}") already as job ${id_state[0]}, not submitted again"
            live=$((live + 1))
            continue
        fi
        local args=(--parsable) after=""
        if [ "$dep" -ge 0 ] && [ -n "${job[dep]}" ]; then
            after="${job[dep]}"
            args+=("--dependency=afterok:$after")
        fi
        args+=("${SBATCH_EXTRA[@]+"${SBATCH_EXTRA[@]}"}")
        if [ "$DRY_RUN" = "1" ]; then
            job[i]="\$JOB_$k"
            echo "[$k/$n] $what -> $dir"
            local word line="JOB_$k=\$(sbatch"
            for word in "${args[@]}"; do
                case "$word" in --dependency=*) line+=" $word" ;; *) line+=" $(_quote "$word")" ;; esac
            done
            echo "$line <<'EOF'"
            _sbatch_script "$i"
            echo "EOF"
            echo ")"
            continue
        fi
        mkdir -p "$dir"
        _sbatch_script "$i" >"$dir/job.sbatch"
        local reply
        reply="$(sbatch "${args[@]}" "$dir/job.sbatch" 2>&1)" ||
            _die "sbatch refused run $k/$n ($what): $reply (the jobs submitted before it stay queued)"
        job[i]="${reply%%;*}"
        echo "[$k/$n] $what -> $dir: submitted as job ${job[i]}${after:+ (after job $after)}"
        submitted=$((submitted + 1))
    done
    if [ "$DRY_RUN" = "1" ]; then
        echo "== $SWEEP_NAME: dry run, nothing submitted ($finished done, $live queued or running already)"
        return
    fi
    echo "== $SWEEP_NAME: $submitted jobs submitted, $live queued or running already, $finished done;" \
        "progress: python tools/sweep_status.py $OUT --sweep $SWEEP_NAME (with this sweep's settings)"
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
