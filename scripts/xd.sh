#!/usr/bin/env bash
# Cross-dataset transfer sweep: train on ImageNet (all classes, 16 shots), evaluate on the 10 other datasets.
#
# For each seed:
#   1. CasPL_* trainers only: phase-1 boosting on the SOURCE's unlabeled train images (the targets stay
#      unseen), at $OUT/boost/<source>/<BOOST_CONFIG>/seed<BOOST_SEEDS>, skipped when its boost_prompts.pt exists;
#   2. training on the source, all classes, SHOTS shots, at
#      $OUT/xd/train/<source>/shots_<SHOTS>/<TRAINER>/<CONFIG>/seed<S> (xd.sh and dg.sh share it);
#   3. evaluation of that model on each target at $OUT/xd/test/<target>/shots_<SHOTS>/<TRAINER>/<CONFIG>/seed<S>.
# A run whose results.json exists is skipped, so a sweep re-run after a crash redoes nothing finished.
# Ctrl-C (or SIGTERM / SIGHUP to the sweep): the runs under way get SIGTERM and the sweep waits for them
# to end (a second Ctrl-C kills them); the next sweep redoes those runs, resuming from their last epoch.
#
# Usage: [VAR=value ...] bash scripts/xd.sh [--help]
# Environment:
#   TRAINER       trainer name (default CasPL_PromptSRC; any registered one: CoOp, PromptSRC, CasPL_MaPLe, ...)
#   SOURCE        source dataset (default imagenet)
#   DATASETS      target datasets (default: the 10 other datasets)
#   SEEDS         seeds (default "1 2 3")
#   DATA          dataset root (default ./data)
#   CONFIG        trainer config: a name in configs/trainers/$TRAINER/ or a .yaml path
#                 (default: the method's cross-dataset config, e.g. vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets)
#   BOOST_CONFIG  CasPL_Boost config name or .yaml path (default: the authors' for the setting,
#                 vit_b16_l14_ep20_8+8ctx_l12, ImageNet ..._batch128_8+8ctx_l12, cross-dataset / DG
#                 ..._batch128_4+4ctx_l1 or _l3; ..._4+4ctx_promptkd: the PromptKD-style phase 1)
#   BOOST_SEEDS   phase-1 seed read by every seed of phase 2 (default 1, as the authors), or 'each'
#   SHOTS         shots per source class (default 16)
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
SWEEP_NAME="xd"
cross_sweep "$XD_TARGETS"
