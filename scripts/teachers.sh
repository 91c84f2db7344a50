#!/usr/bin/env bash
# Teacher ablation: does a stronger senior teacher help? Phase 1 + a phase-2 trainer per teacher,
# base-to-new, and a table "teacher -> Base / New / HM" (python tools/tables.py $OUT --teachers).
#
# For each teacher in TEACHERS, dataset and seed (<slug>: the teacher name with / and : as -):
#   1. phase-1 boosting with TRAINER.CASPL.TEACHER.NAME <teacher> at
#      $OUT/teachers/<slug>/boost/<dataset>/<BOOST_CONFIG>/seed<S>;
#   2. training on the base classes with those boosting prompts at
#      $OUT/teachers/<slug>/train_base/<dataset>/shots_<SHOTS>/<TRAINER>/<CONFIG>/seed<S>;
#   3. evaluation of that model on the new classes at
#      $OUT/teachers/<slug>/test_new/<dataset>/shots_<SHOTS>/<TRAINER>/<CONFIG>/seed<S>.
# The tree is apart from base2new.sh's, so the main tables never mix teachers. Finished runs are skipped.
#
# Usage: [VAR=value ...] bash scripts/teachers.sh [--help]
# Environment:
#   TEACHERS      teacher names (default "ViT-L/14 open_clip:ViT-H-14:laion2b_s32b_b79k"): OpenAI CLIP
#                 names, or open_clip:<model>:<tag> (pip install -e '.[openclip]'; README "Choosing a teacher")
#   TRAINER       phase-2 trainer (default CasPL_PromptSRC; any CasPL_* trainer)
#   DATASETS      dataset config names (default: the 11 of the paper)
#   SEEDS, DATA, CONFIG, BOOST_CONFIG, SHOTS, OUT, OPTS, BOOST_OPTS, GPU, LAUNCHER, JOBS, PYTHON,
#   DRY_RUN, VERBOSE: as in base2new.sh

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h | --help) caspl_usage "${BASH_SOURCE[0]}" ;; esac
caspl_setup
TEACHERS="${TEACHERS:-ViT-L/14 open_clip:ViT-H-14:laion2b_s32b_b79k}"
DATASETS="${DATASETS:-$ALL_DATASETS}"
SHOTS="${SHOTS:-16}"
default_config_unless_set b2n
SWEEP_NAME="teachers"
is_cascaded "$TRAINER" || _die "TRAINER=$TRAINER: the teacher ablation needs a phase-2 CasPL_* trainer (e.g. CasPL_PromptSRC)"

CFG_FILE="$(config_file "$TRAINER" "$CONFIG")"
CFG_NAME="$(config_name "$CFG_FILE")"
ROOT_OUT="$OUT"
USER_BOOST_OPTS=("${EXTRA_BOOST_OPTS[@]+"${EXTRA_BOOST_OPTS[@]}"}")
for TEACHER in $TEACHERS; do
    SLUG="${TEACHER//[\/:]/-}"
    OUT="$ROOT_OUT/teachers/$SLUG" # plan_boost writes under $OUT/boost/
    EXTRA_BOOST_OPTS=("${USER_BOOST_OPTS[@]+"${USER_BOOST_OPTS[@]}"}" TRAINER.CASPL.TEACHER.NAME "$TEACHER")
    for DATASET in $DATASETS; do
        for SEED in $SEEDS; do
            plan_boost "$DATASET" "$SEED"
            # the boosting run may be another seed's (BOOST_SEEDS): name it after its own folder
            PLAN_WHAT[BOOST_INDEX]="boost $DATASET seed${PLAN_DIR[BOOST_INDEX]##*seed} teacher $TEACHER"
            cascade_opts
            COMMON="$DATASET/shots_$SHOTS/$TRAINER/$CFG_NAME/seed$SEED"
            TRAIN_DIR="$OUT/train_base/$COMMON"
            TEST_DIR="$OUT/test_new/$COMMON"
            train_args "$TRAINER" "$CFG_FILE" "$DATASET" "$SEED" "$TRAIN_DIR"
            protocol_opts b2n "$DATASET" "$SHOTS"
            plan_run "train base $DATASET seed$SEED $TRAINER teacher $TEACHER" "$TRAIN_DIR" "$TRAIN_DIR/results.json" \
                "${TRAIN_ARGS[@]}" DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base \
                "${PROTOCOL_OPTS[@]+"${PROTOCOL_OPTS[@]}"}" "${CASCADE_OPTS[@]}" "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}"
            AFTER=$LAST_INDEX # the new-class evaluation needs the trained model
            train_args "$TRAINER" "$CFG_FILE" "$DATASET" "$SEED" "$TEST_DIR"
            plan_run "test new $DATASET seed$SEED $TRAINER teacher $TEACHER" "$TEST_DIR" "$TEST_DIR/results.json" \
                "${TRAIN_ARGS[@]}" --eval-only --model-dir "$TRAIN_DIR" \
                DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES new \
                "${CASCADE_OPTS[@]}" "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}"
        done
    done
done
OUT="$ROOT_OUT"
execute_plan
echo "Table: python tools/tables.py $(_quote "$OUT") --teachers"
