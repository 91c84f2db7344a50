#!/usr/bin/env bash
# Few-shot classification sweep: 1, 2, 4, 8 and 16 shots on the 11 datasets, all classes.
#
# For each dataset and seed:
#   1. CasPL_* trainers only: phase-1 boosting on the dataset's unlabeled train images, once, at
#      $OUT/boost/<dataset>/<BOOST_CONFIG>/seed<BOOST_SEEDS> (skipped when its boost_prompts.pt exists; the same
#      run base2new.sh uses);
#   2. for each shot count K: training on all classes with K shots (the run ends with the evaluation on the
#      test split) at $OUT/fewshot/<dataset>/shots_<K>/<TRAINER>/<CONFIG>/seed<S>.
# A run whose results.json exists is skipped, so a sweep re-run after a crash redoes nothing finished.
# Ctrl-C (or SIGTERM / SIGHUP to the sweep): the runs under way get SIGTERM and the sweep waits for them
# to end (a second Ctrl-C kills them); the next sweep redoes those runs, resuming from their last epoch.
#
# Usage: [VAR=value ...] bash scripts/fewshot.sh [--help]
# Environment:
#   TRAINER       trainer name (default CasPL_PromptSRC; also CoOp, CoCoOp, MaPLe, PromptSRC, LinearProbeCLIP, ...)
#   DATASETS      dataset config names (default: the 11 of the paper)
#   SEEDS         seeds (default "1 2 3")
#   SHOTS         shot counts (default "1 2 4 8 16")
#   DATA          dataset root (default ./data)
#   CONFIG        trainer config: a name in configs/trainers/$TRAINER/ or a .yaml path
#                 (default: the method's few-shot config, e.g. vit_b16_c2_ep50_batch4_4+4ctx_few_shot;
#                 CoOp: vit_b16 with CoOp's epochs: 50 at 1 shot, 100 at 2/4 shots, 50 on ImageNet)
#   BOOST_CONFIG  CasPL_Boost config name or .yaml path (default: the authors' for the setting,
#                 vit_b16_l14_ep20_8+8ctx_l12, ImageNet ..._batch128_8+8ctx_l12, cross-dataset / DG
#                 ..._batch128_4+4ctx_l1 or _l3; ..._4+4ctx_promptkd: the PromptKD-style phase 1)
#   BOOST_SEEDS   phase-1 seed read by every seed of phase 2 (default 1, as the authors), or 'each'
#   OUT           output root (default output)
#   OPTS          extra KEY VALUE options for every train.py call, e.g. 'INPUT.SIZE "(32, 32)"'
#   BOOST_OPTS    extra KEY VALUE options for the boosting runs only
#   GPU           CUDA_VISIBLE_DEVICES of the runs (default: unchanged)
#   LAUNCHER      local (default) | torchrun (one run over the GPUs in GPU; NPROC processes) |
#                 slurm (each run one Slurm job, submitted with sbatch after the run it needs: see below)
#   JOBS          runs side by side (default 1), each on one GPU of GPU (needs as many ids); a run
#                 starts once the run it needs (boosting, source training) has finished
#   PYTHON        python command (default python)
#   DRY_RUN=1     print the commands instead of running them
#   VERBOSE=1     show each run's output (default: in <run dir>/console.txt and log.txt only)
# With LAUNCHER=slurm (README "Running on a cluster"): finished runs and runs whose folder has a queued or
# running job are not submitted; DRY_RUN=1 prints the sbatch scripts; progress: tools/sweep_status.py.
#   SLURM_PARTITION, SLURM_ACCOUNT, SLURM_TIME   sbatch --partition / --account / --time (default: unset)
#   SLURM_GPUS_PER_JOB  GPUs of each job (default 1; 0: CPU jobs; > 1: torchrun over them inside the job)
#   SLURM_EXTRA         more sbatch options, e.g. '--cpus-per-task=8 --mem=64G --qos=normal'

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h | --help) caspl_usage "${BASH_SOURCE[0]}" ;; esac
caspl_setup
DATASETS="${DATASETS:-$ALL_DATASETS}"
SHOTS="${SHOTS:-1 2 4 8 16}"
default_config_unless_set fewshot
SWEEP_NAME="fewshot"
[ "$TRAINER" = CasPL_Boost ] && _die "TRAINER=CasPL_Boost is phase 1 only; pick a phase-2 trainer (e.g. CasPL_PromptSRC)"

CFG_FILE="$(config_file "$TRAINER" "$CONFIG")"
CFG_NAME="$(config_name "$CFG_FILE")"
for DATASET in $DATASETS; do
    for SEED in $SEEDS; do
        if is_cascaded "$TRAINER"; then plan_boost "$DATASET" "$SEED"; fi
        cascade_opts
        for K in $SHOTS; do
            DIR="$OUT/fewshot/$DATASET/shots_$K/$TRAINER/$CFG_NAME/seed$SEED"
            train_args "$TRAINER" "$CFG_FILE" "$DATASET" "$SEED" "$DIR"
            protocol_opts fewshot "$DATASET" "$K"
            plan_run "$K-shot $DATASET seed$SEED $TRAINER" "$DIR" "$DIR/results.json" \
                "${TRAIN_ARGS[@]}" DATASET.NUM_SHOTS "$K" DATASET.SUBSAMPLE_CLASSES all \
                "${PROTOCOL_OPTS[@]+"${PROTOCOL_OPTS[@]}"}" "${CASCADE_OPTS[@]+"${CASCADE_OPTS[@]}"}" "${EXTRA_OPTS[@]+"${EXTRA_OPTS[@]}"}"
        done
    done
done
execute_plan
