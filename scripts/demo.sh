#!/usr/bin/env bash
# The whole CasPL pipeline in about a minute on 2 CPU cores, with nothing to download (`make demo`).
# The Synthetic dataset is generated under $DATA on first use (12 classes: 6 base, 6 new); then
#   1. CLIP (ZeroshotCLIP, tiny-vit) evaluated on the base and the new classes;
#   2. phase 1, CasPL_Boost: boosting prompts of the `tiny-vit` student distilled from the frozen
#      `small-vit` teacher on the unlabeled train images; the boosted CLIP (CasPL_ZS) evaluated;
#   3. PromptSRC trained on the base classes, evaluated on the base and the new classes;
#   4. CasPL_PromptSRC (PromptSRC + the frozen boosting prompts of step 2), likewise;
# and the base-to-new table of tools/tables.py (also written to $OUT/base2new_table.md).
# Each step is one scripts/base2new.sh sweep with the demo configs (configs/trainers/*/demo_tiny.yaml).
# Both CLIPs are random tiny models: the numbers show that the pipeline runs end to end, not CasPL's gains.
# Finished runs are skipped on a re-run (delete $OUT to start over).
#
# Usage: [VAR=value ...] bash scripts/demo.sh [--help]
# Environment:
#   OUT      output root (default <repo>/output/demo); relative paths are taken from the current folder
#   DATA     dataset root (default $OUT/data)
#   SEEDS    seeds (default 1)
#   PYTHON   python command (default python)
#   VERBOSE  1: show each run's output and progress bars (`make demo` sets it; default here: 0, the
#            output goes to <run dir>/console.txt and log.txt only)

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
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "ERROR: PYTHON=$PYTHON not found; run 'make demo' or set PYTHON (e.g. PYTHON=.venv/bin/python)" >&2
    exit 2
fi

CFG="$ROOT/configs/trainers"
# One dataset, all its 16 train images per base class; nothing else of the caller's sweep settings.
export DATASETS=synthetic SHOTS=16 LAUNCHER=local JOBS=1 DRY_RUN=0 OPTS="" BOOST_OPTS=""
export BOOST_CONFIG="$CFG/CasPL_Boost/demo_tiny.yaml"

start=$SECONDS
step() {
    echo
    echo "==== demo step $1/4: $2 | elapsed $((SECONDS - start)) s"
}

# The zero-shot trainers train nothing: the boosting config gives them the tiny backbone and inputs.
step 1 "zero-shot CLIP (tiny-vit)"
TRAINER=ZeroshotCLIP CONFIG="$BOOST_CONFIG" bash "$ROOT/scripts/base2new.sh"
step 2 "boosting (CasPL_Boost: tiny-vit student, small-vit teacher), then the boosted CLIP (CasPL_ZS)"
TRAINER=CasPL_ZS CONFIG="$BOOST_CONFIG" bash "$ROOT/scripts/base2new.sh"
step 3 "PromptSRC on the base classes, evaluated on base and new"
TRAINER=PromptSRC CONFIG="$CFG/PromptSRC/demo_tiny.yaml" bash "$ROOT/scripts/base2new.sh"
step 4 "CasPL_PromptSRC (PromptSRC + the frozen boosting prompts of step 2)"
TRAINER=CasPL_PromptSRC CONFIG="$CFG/CasPL_PromptSRC/demo_tiny.yaml" bash "$ROOT/scripts/base2new.sh"

echo
echo "==== results ($OUT), demo finished in $((SECONDS - start)) s"
# What phase 1 optimises: the student's KL to the teacher on held-out images, before -> after boosting.
for seed in $SEEDS; do
    "$PYTHON" -c 'import json, sys
r = json.load(open(sys.argv[1]))
show = lambda v: "n/a" if v is None else "%.4f" % v
before, after = show(r.get("kd_heldout_before")), show(r.get("kd_heldout_after"))
print("boosting, seed %s: held-out KL to the teacher %s -> %s" % (sys.argv[2], before, after))' \
        "$OUT/boost/synthetic/demo_tiny/seed$seed/results.json" "$seed"
done
"$PYTHON" "$ROOT/tools/tables.py" "$OUT" --tables b2n --no-plots --output "$OUT/base2new_table.md"
