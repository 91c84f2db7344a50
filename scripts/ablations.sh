#!/usr/bin/env bash
# Ablations of the CasPL paper that the standard sweeps do not run, each a base2new.sh / fewshot.sh sweep
# with phase-1 options of its own, in a tree of its own under $OUT/ablations/<ABLATION>/.
#
#   ABLATION=partial_data (default): the appendix table "boosting prompts trained with N unlabeled images per
#     class" (DTD, PromptSRC + CasPL, HM). For each N in PER_CLASS: phase 1 on N train images per class
#     (TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS N, drawn with the boosting run's seed; "full": the whole train
#     split), then base-to-new, at $OUT/ablations/partial_data/per_class_<N>/{boost,base2new}/...
#   ABLATION=out_of_domain: the main text's "distinct unlabeled data source" table (16-shot, the 10 datasets
#     but ImageNet): phase 1 on ImageNet's train images with each target's class names
#     (TRAINER.CASPL.BOOST.UNLABELED imagenet), then few-shot, at $OUT/ablations/out_of_domain/{boost,fewshot}/...
#     Its in-domain and PromptSRC columns are fewshot.sh's runs.
# Read the tables with: python tools/tables.py $OUT/ablations/<ABLATION>/<...>
#
# Usage: [VAR=value ...] bash scripts/ablations.sh [--help]
# Environment (and every variable of base2new.sh / fewshot.sh, passed on):
#   ABLATION      partial_data (default) | out_of_domain
#   PER_CLASS     partial_data: images per class (default "1 2 4 8 16 32 full")
#   TRAINER       trainer name (default CasPL_PromptSRC)
#   DATASETS      datasets (default: partial_data dtd; out_of_domain the 10 datasets but ImageNet)
#   SEEDS         seeds (default "1 2 3")
#   DATA          dataset root (default ./data)
#   CONFIG        trainer config (default: the method's, as base2new.sh / fewshot.sh)
#   BOOST_CONFIG  CasPL_Boost config (default: the authors' for the setting, as base2new.sh)
#   BOOST_SEEDS   phase-1 seed read by every seed of phase 2 (default 1, as the authors), or 'each'
#   SHOTS         shots (default 16)
#   OUT           output root (default output)
#   OPTS          extra KEY VALUE options for every train.py call
#   BOOST_OPTS    extra KEY VALUE options for the boosting runs (the ablation's option is added)
#   GPU           CUDA_VISIBLE_DEVICES of the runs (default: unchanged)
#   LAUNCHER      local (default) | torchrun
#   JOBS          runs side by side (default 1)
#   PYTHON        python command (default python)
#   DRY_RUN=1     print the commands instead of running them
#   VERBOSE=1     show each run's output

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h | --help) caspl_usage "${BASH_SOURCE[0]}" ;; esac
caspl_setup # absolute DATA / OUT / PYTHON, repository root
ABLATION="${ABLATION:-partial_data}"
SHOTS="${SHOTS:-16}"
export TRAINER SEEDS DATA PYTHON SHOTS BOOST_SEEDS
case "$ABLATION" in
    partial_data)
        export DATASETS="${DATASETS:-dtd}"
        PER_CLASS="${PER_CLASS:-1 2 4 8 16 32 full}"
        for n in $PER_CLASS; do
            [[ "$n" == full || "$n" =~ ^[1-9][0-9]*$ ]] || _die "PER_CLASS takes positive image counts or 'full', got '$n'"
        done
        for n in $PER_CLASS; do
            per_class="$n"
            if [ "$n" = full ]; then per_class=0; fi
            echo "== partial_data: $n unlabeled images per class"
            OUT="$OUT/ablations/partial_data/per_class_$n" \
                BOOST_OPTS="$BOOST_OPTS TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS $per_class" \
                bash scripts/base2new.sh
        done
        ;;
    out_of_domain)
        export DATASETS="${DATASETS:-${ALL_DATASETS#imagenet }}"
        OUT="$OUT/ablations/out_of_domain" BOOST_OPTS="$BOOST_OPTS TRAINER.CASPL.BOOST.UNLABELED imagenet" \
            bash scripts/fewshot.sh
        ;;
    *) _die "ABLATION must be partial_data or out_of_domain, got '$ABLATION'" ;;
esac
