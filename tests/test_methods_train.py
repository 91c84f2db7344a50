"""Each prompt learner trains on the Synthetic dataset: its loss goes down, checkpoints reload exactly,
PromptSRC's GPA is the Gaussian-weighted average of the epochs, and --resume equals an uninterrupted run."""

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import train_argv

COMMON = [
    "OPTIM.NAME", "sgd", "OPTIM.LR", "0.01", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR_SCHEDULER", "cosine",
    "DATASET.NUM_SHOTS", "4",
]  # fmt: skip
METHODS = {
    "CoOp": ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32"],
    "CoCoOp": ["TRAINER.COCOOP.N_CTX", "4", "TRAINER.COCOOP.CTX_INIT", "a photo of a", "TRAINER.COCOOP.PREC", "fp32"],
    "IVLP": [
        "TRAINER.IVLP.N_CTX_TEXT", "2", "TRAINER.IVLP.N_CTX_VISION", "2",
        "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2", "TRAINER.IVLP.PREC", "fp32",
    ],
    "MaPLe": ["TRAINER.MAPLE.PROMPT_DEPTH", "2", "TRAINER.MAPLE.PREC", "fp32"],
    "PromptSRC": [
        "TRAINER.PROMPTSRC.N_CTX_TEXT", "2", "TRAINER.PROMPTSRC.N_CTX_VISION", "2",
        "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "2",
        "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1", "TRAINER.PROMPTSRC.PREC", "fp32",
    ],
}  # fmt: skip


def build(data_root: Path, out: Path, trainer: str, *opts: str):
    """A trainer built exactly as train.py builds it (seeded), without running it."""
    import datasets  # noqa: F401  (registers Synthetic)
    import trainers  # noqa: F401
    from caspl.config import build_arg_parser, setup_cfg
    from caspl.engine import build_trainer
    from caspl.utils.seed import set_random_seed

    cfg = setup_cfg(build_arg_parser().parse_args(train_argv(data_root, out, trainer, *opts)))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def fixed_batch(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(trainer.train_loader_x))
    return trainer.parse_batch_train(batch)


@torch.no_grad()
def objective(trainer) -> float:
    """The method's training loss averaged over the whole few-shot train split (eval mode)."""
    trainer.set_model_mode("eval")
    total, count = 0.0, 0
    for batch in trainer.train_loader_x:
        images, labels = trainer.parse_batch_train(batch)
        total += trainer.compute_loss(images, labels)[0].item() * len(labels)
        count += len(labels)
    return total / count


@pytest.mark.parametrize("method", list(METHODS))
def test_training_lowers_the_loss_and_checkpoints_reload_exactly(data_root, tmp_path, method):
    opts = COMMON + METHODS[method]
    trainer = build(data_root, tmp_path, method, *opts)
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("prompt_learner.") for n in names)
    images, labels = fixed_batch(trainer)
    before = objective(trainer)
    trainer.train()
    after = objective(trainer)
    print(f"{method}: training loss over the train split {before:.4f} -> {after:.4f}")
    assert after < before
    assert (tmp_path / "prompt_learner" / "model.pth.tar-2").is_file()
    assert (tmp_path / "results.json").is_file()
    with torch.no_grad():
        trainer.set_model_mode("eval")
        logits = trainer.model_inference(images)
    fresh = build(data_root, tmp_path / "fresh", method, *opts)
    fresh.load_model(str(tmp_path), epoch=2)
    with torch.no_grad():
        fresh.set_model_mode("eval")
        assert torch.equal(fresh.model_inference(images), logits)


def test_promptsrc_final_prompts_are_the_gaussian_weighted_epoch_average(data_root, tmp_path):
    from trainers.promptsrc import gpa_weights

    opts = COMMON + METHODS["PromptSRC"] + ["OPTIM.MAX_EPOCH", "3", "TEST.NO_TEST", "True"]
    trainer = build(data_root, tmp_path, "PromptSRC", *opts)
    epochs = []
    accumulate = trainer.gpa.accumulate

    def record(epoch):
        epochs.append({k: v.detach().clone() for k, v in trainer.model.prompt_learner.state_dict().items()})
        accumulate(epoch)

    trainer.gpa.accumulate = record
    trainer.train()
    weights = gpa_weights(3, 2, 1)
    assert len(epochs) == 3 and weights[1] > weights[0]
    final = trainer.model.prompt_learner.state_dict()
    for key, value in final.items():
        expected = sum(w * e[key] for w, e in zip(weights, epochs))
        torch.testing.assert_close(value, expected)
        assert not torch.allclose(value, epochs[-1][key])  # the aggregate, not the last epoch
    saved = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]
    for key, value in final.items():
        assert torch.equal(saved[key], value)  # the last checkpoint holds the GPA model


def test_promptsrc_resume_reproduces_the_uninterrupted_run(data_root, tmp_path, run_train):
    opts = COMMON + METHODS["PromptSRC"] + ["OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1"]
    full = tmp_path / "full"
    full_res = run_train(full, "PromptSRC", *opts)
    # the same run interrupted after epoch 2: drop epoch 3 and point the checkpoints back
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for name in ("prompt_learner", "gpa"):
        (part / name / "model.pth.tar-3").unlink()
        (part / name / "checkpoint").write_text("model.pth.tar-2\n")
    (part / "results.json").unlink()
    res = run_train(part, "PromptSRC", *opts)
    assert "Found checkpoint" in (part / "log.txt").read_text()
    for name in ("prompt_learner", "gpa"):
        a = torch.load(full / name / "model.pth.tar-3", weights_only=True)["state_dict"]
        b = torch.load(part / name / "model.pth.tar-3", weights_only=True)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert res["metrics"] == full_res["metrics"]


def test_linear_probe_fits_on_val_searched_c_and_reloads(data_root, tmp_path, run_train):
    res = run_train(
        tmp_path, "LinearProbeCLIP", "DATASET.NUM_SHOTS", "4", "TRAINER.LINEAR_PROBE.NUM_STEP", "2"
    )
    print(f"linear probe: C={res['linear_probe_C']:.4g}, test accuracy {res['metrics']['accuracy']:.1f}%")
    assert res["linear_probe_C"] > 0 and res["metrics"]["accuracy"] > 100.0 / 12  # above chance (12 classes)
    log = (tmp_path / "log.txt").read_text()
    assert "Chosen C" in log and (tmp_path / "linear_probe" / "model.pth.tar-1").is_file()
    again = run_train(
        tmp_path / "eval", "LinearProbeCLIP", "DATASET.NUM_SHOTS", "4",
        extra_argv=("--eval-only", "--model-dir", str(tmp_path), "--load-epoch", "1"),
    )  # fmt: skip
    assert again["metrics"] == res["metrics"]
