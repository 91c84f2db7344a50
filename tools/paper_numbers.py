"""Published numbers of the CasPL paper (ECCV 2024), keyed by our trainer names; accuracy in %."""

# Base-to-new generalization, average over the 11 datasets: (Base, New, HM). The paper's average HM is
# the harmonic mean of the average Base and the average New (not the mean of per-dataset HMs).
BASE2NEW_AVERAGE: dict[str, tuple[float, float, float]] = {
    "ZeroshotCLIP": (69.34, 74.22, 71.70),
    "CoOp": (82.69, 63.22, 71.66),
    "CasPL_CoOp": (84.78, 74.49, 79.30),
    "CoCoOp": (80.47, 71.69, 75.83),
    "CasPL_CoCoOp": (83.63, 78.12, 80.78),
    "MaPLe": (82.28, 75.14, 78.55),
    "CasPL_MaPLe": (84.48, 79.59, 81.96),
    "PromptSRC": (84.26, 76.10, 79.97),
    "CasPL_PromptSRC": (86.11, 79.54, 82.69),
}

# Few-shot classification, average over the 11 datasets, per number of shots.
FEWSHOT_AVERAGE: dict[str, dict[int, float]] = {
    "LinearProbeCLIP": {1: 45.83, 2: 57.98, 4: 68.01, 8: 74.47, 16: 78.79},
    "CoOp": {1: 67.56, 2: 70.65, 4: 74.02, 8: 76.98, 16: 79.89},
    "CoCoOp": {1: 66.79, 2: 67.65, 4: 71.21, 8: 72.96, 16: 74.90},
    "MaPLe": {1: 69.27, 2: 72.58, 4: 75.37, 8: 78.89, 16: 81.79},
    "PromptSRC": {1: 72.32, 2: 75.29, 4: 78.35, 8: 80.69, 16: 82.87},
    "CasPL_PromptSRC": {1: 75.91, 2: 77.94, 4: 80.45, 8: 82.22, 16: 84.49},
}

# The datasets the paper's averages are taken over (CoOp config names).
PAPER_DATASETS: tuple[str, ...] = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)  # fmt: skip
XD_TARGETS: tuple[str, ...] = PAPER_DATASETS[1:]
DG_TARGETS: tuple[str, ...] = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
