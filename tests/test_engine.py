"""Engine: train -> checkpoint -> eval-only round trip, exact resume, zero-shot accuracy, bad input."""

import argparse
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.utils.checkpoint import atomic_save, safe_load
from caspl.vlm.model import PromptedCLIP
from caspl.vlm.prompted import PromptGroup


class _ShallowVL(PromptedCLIP):
    """A minimal trainable model: one shallow text group and one shallow vision group."""

    def __init__(self, clip_model, classnames, cascade):
        super().__init__(clip_model, [f"{n}." for n in classnames], [2], cascade=cascade)
        self.prompt_learner.text = PromptGroup(2, clip_model.ln_final.weight.shape[0], 1)
        self.prompt_learner.vision = PromptGroup(2, clip_model.visual.conv1.weight.shape[0], 1)

    def method_text_tokens(self):
        return [self.prompt_learner.text()]

    def method_vision_tokens(self):
        return [self.prompt_learner.vision()]


if "EngineTestTrainer" not in TRAINER_REGISTRY:

    @TRAINER_REGISTRY.register()
    class EngineTestTrainer(CLIPPromptTrainer):
        """Kept in tests: exercises the engine independently of the published methods."""

        cfg_node = "CASPL"  # any node with PREC

        def build_prompt_model(self, clip_model, classnames, cascade):
            return _ShallowVL(clip_model, classnames, cascade)


OPTS = ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1",
        "TRAINER.CASPL.PREC", "fp32", "DATASET.NUM_SHOTS", "4", "OPTIM.LR_SCHEDULER", "cosine"]  # fmt: skip


def _prompts(out: Path, epoch: int) -> dict:
    return safe_load(out / "prompt_learner" / f"model.pth.tar-{epoch}")["state_dict"]


def test_train_checkpoint_eval_only_round_trip(run_train, tmp_path):
    out = tmp_path / "train"
    res = run_train(out, "EngineTestTrainer", *OPTS)
    assert (out / "prompt_learner" / "model.pth.tar-3").is_file()
    assert (out / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-3"
    log = (out / "log.txt").read_text()
    assert "* accuracy:" in log and "* macro_f1:" in log
    assert res["trainer"] == "EngineTestTrainer" and res["shots"] == 4 and res["seed"] == 1
    ev = run_train(
        tmp_path / "eval", "EngineTestTrainer", *OPTS,
        extra_argv=("--eval-only", "--model-dir", str(out), "--load-epoch", "3"),
    )  # fmt: skip
    assert ev["metrics"] == res["metrics"]
    assert ev["eval_only"] is True


def test_resume_after_interruption_matches_uninterrupted(run_train, tmp_path):
    full = tmp_path / "full"
    res_full = run_train(full, "EngineTestTrainer", *OPTS)
    # Simulate a crash right after epoch 1's checkpoint: drop everything written later.
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    for epoch in (2, 3):
        (crashed / "prompt_learner" / f"model.pth.tar-{epoch}").unlink()
    (crashed / "prompt_learner" / "checkpoint").write_text("model.pth.tar-1\n")
    (crashed / "results.json").unlink()
    res_resumed = run_train(crashed, "EngineTestTrainer", *OPTS)
    assert "Found checkpoint" in (crashed / "log.txt").read_text()
    assert list(crashed.glob("log.txt-*")), "the previous log is kept"
    a, b = _prompts(full, 3), _prompts(crashed, 3)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert res_resumed["metrics"] == res_full["metrics"]
    # And the prompts did move during training (otherwise the comparison proves nothing).
    assert not torch.equal(_prompts(full, 1)["text.tokens.0"], a["text.tokens.0"])


def test_resume_keeps_the_best_val_model_unless_beaten(run_train, tmp_path):
    opts = [*OPTS, "TEST.FINAL_MODEL", "best_val"]
    crashed = tmp_path / "crashed"
    run_train(crashed, "EngineTestTrainer", *opts)
    # Crash after epoch 2, with a best model on record that no later epoch can beat.
    (crashed / "prompt_learner" / "model.pth.tar-3").unlink()
    (crashed / "prompt_learner" / "checkpoint").write_text("model.pth.tar-2\n")
    (crashed / "results.json").unlink()  # a crash comes before results.json (written last)
    best_path = crashed / "prompt_learner" / "model-best.pth.tar"
    best = safe_load(best_path)
    best.update(val_result=101.0, epoch=1)
    atomic_save(best, best_path)
    run_train(crashed, "EngineTestTrainer", *opts)
    kept = safe_load(best_path)
    assert (kept["epoch"], kept["val_result"]) == (1, 101.0)
    assert "Best val result so far: 101.0000" in (crashed / "log.txt").read_text()


def test_zero_shot_accuracy_equals_direct_computation(run_train, tmp_path, data_root, tiny_clip):
    import clip

    from caspl.config import build_arg_parser, setup_cfg
    from caspl.data import DataManager
    from tests.conftest import train_argv

    res = run_train(tmp_path / "zs", "ZeroshotCLIP")
    cfg = setup_cfg(build_arg_parser().parse_args(train_argv(data_root, tmp_path / "x", "ZeroshotCLIP")))
    dm = DataManager(cfg)
    with torch.no_grad():
        text = clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in dm.classnames])
        tf = F.normalize(tiny_clip.encode_text(text), dim=-1)
        correct = total = 0
        for batch in dm.test_loader:
            pred = (F.normalize(tiny_clip.encode_image(batch["img"]), dim=-1) @ tf.t()).argmax(-1)
            correct += (pred == batch["label"]).sum().item()
            total += len(pred)
    assert res["metrics"]["accuracy"] == pytest.approx(100.0 * correct / total)


def test_unknown_trainer_lists_registered(run_train, tmp_path, capsys):
    with pytest.raises(SystemExit):  # an argument error, answered before torch is imported (tests/test_ux.py)
        run_train(tmp_path / "x", "NoSuchTrainer")
    assert "ZeroshotCLIP" in capsys.readouterr().err


def test_eval_only_without_checkpoint_names_path(run_train, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.pth\.tar-5"):
        run_train(
            tmp_path / "x", "EngineTestTrainer", *OPTS,
            extra_argv=("--eval-only", "--model-dir", str(tmp_path / "nothing"), "--load-epoch", "5"),
        )  # fmt: skip


def test_checkpoint_atomic_and_corrupt_file_named(tmp_path):
    path = tmp_path / "ck" / "model.pth.tar-1"
    atomic_save({"state_dict": {"w": torch.ones(3)}}, path)
    assert safe_load(path)["state_dict"]["w"].sum() == 3
    assert not list(path.parent.glob("*.tmp")), "no temp files left behind"
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.raises(RuntimeError, match=str(path)):
        safe_load(path)


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": argparse.Namespace(a=1)}, path)  # an arbitrary object: weights_only must refuse it
    with pytest.raises(RuntimeError, match="evil.pth"):
        safe_load(path)


def test_wrong_shape_names_tensor_and_shapes():
    from caspl.engine.trainer import load_model_state

    module = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"'weight'.*\(4, 3\).*\(2, 3\)"):
        load_model_state(module, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)}, "ckpt")
