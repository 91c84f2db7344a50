#!/usr/bin/env bash
# CasPL in miniature, measured, with nothing to download (`make demo`; ~3 min of CPU time).
# One line per run; each run's output and config stay in its console.txt and log.txt.
# The micro world (caspl/vlm/micro.py): coloured, patterned shapes and captions made of their words. Two
# micro-CLIPs pretrained on it ship with the package (tools/pretrain_micro_clip.py regenerates them):
# `micro-student` (the tiny-vit shape; never saw the demo's colour-shape pairs) and `micro-teacher` (a
# ResNet vision tower, pretrained on the whole world). The MicroWorld dataset (16 colour-shape classes:
# 8 base, 8 new) is drawn under $DATA on first use. Then scripts/base2new.sh sweeps with the demo configs
# (configs/trainers/*/demo_micro*.yaml), two at a time where they do not depend on each other:
#   1. zero-shot CLIP with the student and with the teacher, on the base and the new classes;
#   2. phase 1, CasPL_Boost: boosting prompts of the student distilled from the teacher on the unlabeled
#      train images; the boosted CLIP (CasPL_ZS, "CLIP+CasPL") evaluated; beside it CoOp, trained on the
#      base classes and evaluated on base and new;
#   3. CoOp+CasPL (CasPL_CoOp: CoOp + the frozen boosting prompts of step 2); beside it PromptSRC;
#   4. PromptSRC+CasPL;
# then the held-out KL to the teacher before/after boosting and the base-to-new table of tools/tables.py
# (also written to $OUT/base2new_table.md). Finished runs are skipped on a re-run (delete $OUT to start
# over).
#
# Usage: [VAR=value ...] bash scripts/demo.sh [--help]
# Environment:
#   OUT      output root (default <repo>/output/demo); relative paths are taken from the current folder
#   DATA     dataset root (default $OUT/data)
#   SEEDS    seeds (default 1)
#   PYTHON   python command (default python)
#   VERBOSE  1: show each run's output and progress bars (default 0: one line per run; each run's full
#            output and config stay in <run dir>/console.txt and log.txt)
#   DEMO_PARALLEL  1: two independent sweeps side by side, one thread per run (default 1 on a machine with
#            2 or more cores); 0: one run at a time

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "${1:-}" in -h | --help)
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac

export OUT="${OUT:-$ROOT/output/demo}"
export DATA="${DATA:-$OUT/data}"
export SEEDS="${SEEDS:-1}"
export PYTHON="${PYTHON:-python}"
export VERBOSE="${VERBOSE:-0}"
export JOBS=1
# Independent sweeps side by side on a machine with 2 or more cores, one thread per run.
if [ -z "${DEMO_PARALLEL:-}" ]; then
    DEMO_PARALLEL=0
    cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)" # nproc reads OMP_*
    if [ "$cores" -ge 2 ]; then DEMO_PARALLEL=1; fi
fi
if [ "$DEMO_PARALLEL" = 1 ]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "ERROR: PYTHON=$PYTHON not found; run 'make demo' or set PYTHON (e.g. PYTHON=.venv/bin/python)" >&2
    exit 2
fi

CFG="$ROOT/configs/trainers"
# One dataset, all its 16 shots per base class; nothing else of the caller's sweep settings.
export DATASETS=micro_world SHOTS=16 LAUNCHER=local DRY_RUN=0 OPTS="" BOOST_OPTS="" GPU=""
export BOOST_CONFIG="$CFG/CasPL_Boost/demo_micro.yaml"
mkdir -p "$DATA" # MicroWorld is drawn there on first use; the sweeps check the folder exists

start=$SECONDS
step() {
    echo
    echo "==== demo step $1/4: $2 | elapsed $((SECONDS - start)) s"
}
sweep() { # TRAINER CONFIG
    TRAINER="$1" CONFIG="$2" bash "$ROOT/scripts/base2new.sh"
}
# A sweep prints "[1/2] <run> ... " and ends that line when the run is done: passed on as whole lines, the
# lines of two sweeps side by side interleave but are never cut.
whole_lines() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done
}
# Sweeps in the background ignore SIGINT (bash does that to background jobs), so Ctrl-C or SIGTERM to the
# demo is passed on to them as SIGTERM: each stops its runs as it does on its own, and the demo stops.
PIPES=() PID_FILES=() STOPPED=""
stop_beside() {
    STOPPED="$1"
    local f pid
    for f in "${PID_FILES[@]}"; do
        pid="$(cat "$f" 2>/dev/null || true)"
        if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
}
# Sweep TRAINER CONFIG in the background, its lines whole; the sweep's own pid goes to a file (the process
# to signal), the pipeline's to PIPES (its end: the sweep has ended and its last line is out).
beside() {
    local pid_file
    pid_file="$(mktemp)"
    PID_FILES+=("$pid_file")
    {
        TRAINER="$1" CONFIG="$2" bash "$ROOT/scripts/base2new.sh" &
        echo "$!" >"$pid_file"
        wait "$!"
    } | whole_lines &
    PIPES+=($!)
}
# Wait for background job $1, also when a signal interrupts the wait; returns its exit status.
wait_job() {
    local rc=0
    while :; do
        if wait "$1"; then rc=0; else rc=$?; fi
        kill -0 "$1" 2>/dev/null || return "$rc"
    done
}
# Two sweeps that do not depend on each other: side by side when DEMO_PARALLEL=1, else one after the other.
side_by_side() { # TRAINER CONFIG TRAINER CONFIG
    if [ "$DEMO_PARALLEL" != 1 ]; then
        sweep "$1" "$2"
        sweep "$3" "$4"
        return
    fi
    PIPES=() PID_FILES=()
    trap 'stop_beside INT' INT
    trap 'stop_beside TERM' TERM
    beside "$1" "$2"
    beside "$3" "$4"
    local pid failed=0
    for pid in "${PIPES[@]}"; do wait_job "$pid" || failed=1; done
    trap - INT TERM
    rm -f "${PID_FILES[@]}"
    if [ -n "$STOPPED" ]; then
        echo "demo stopped by SIG$STOPPED" >&2
        if [ "$STOPPED" = INT ]; then exit 130; fi
        exit 143
    fi
    return "$failed"
}

step 1 "zero-shot CLIP: micro-student, micro-teacher"
side_by_side ZeroshotCLIP "$CFG/ZeroshotCLIP/demo_micro_student.yaml" \
    ZeroshotCLIP "$CFG/ZeroshotCLIP/demo_micro_teacher.yaml"
step 2 "boosting (CasPL_Boost: student <- teacher on unlabeled images), then the boosted CLIP (CasPL_ZS); CoOp"
side_by_side CasPL_ZS "$BOOST_CONFIG" CoOp "$CFG/CoOp/demo_micro.yaml"
step 3 "CoOp+CasPL (CoOp + the frozen boosting prompts of step 2); PromptSRC"
side_by_side CasPL_CoOp "$CFG/CasPL_CoOp/demo_micro.yaml" PromptSRC "$CFG/PromptSRC/demo_micro.yaml"
step 4 "PromptSRC+CasPL"
sweep CasPL_PromptSRC "$CFG/CasPL_PromptSRC/demo_micro.yaml"

echo
echo "==== results ($OUT), demo finished in $((SECONDS - start)) s"
# What phase 1 optimises: the student's KL to the teacher on held-out images, before -> after boosting.
# (one phase-1 run per dataset, seed 1, shared by every seed unless BOOST_SEEDS=each: list what ran)
for result in "$OUT"/boost/micro_world/demo_micro/seed*/results.json; do
    seed="${result%/results.json}"
    "$PYTHON" -c 'import json, sys
r = json.load(open(sys.argv[1]))
show = lambda v: "n/a" if v is None else "%.4f" % v
before, after = show(r.get("kd_heldout_before")), show(r.get("kd_heldout_after"))
print("boosting, seed %s: held-out KL to the teacher %s -> %s" % (sys.argv[2], before, after))' \
        "$result" "${seed##*seed}"
done
"$PYTHON" "$ROOT/tools/tables.py" "$OUT" --tables b2n --no-plots --output "$OUT/base2new_table.md"
