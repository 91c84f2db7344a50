"""CasPL: the KD loss, the boosting phase, boost_prompts.pt, and the cascade into other trainers."""

import math
from pathlib import Path

import pytest
import torch

from caspl.registry import TRAINER_REGISTRY
from caspl.utils.checkpoint import safe_load
from caspl.vlm.build import build_clip
from caspl.vlm.model import CascadeGroups, PromptedCLIP
from caspl.vlm.prompted import PromptGroup
from trainers.caspl import cascaded, kd_loss, load_boost_prompts, save_boost_prompts

BOOST_OPTS = [
    "TRAINER.CASPL.PREC", "fp32",
    "TRAINER.CASPL.TEACHER.NAME", "small-vit",
    "TRAINER.CASPL.BOOST.N_CTX_TEXT", "2", "TRAINER.CASPL.BOOST.N_CTX_VISION", "2",
    "TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT", "2", "TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION", "2",
    "TRAINER.CASPL.BOOST.CTX_INIT", "a photo",
    "OPTIM.NAME", "sgd", "OPTIM.LR", "0.5", "OPTIM.MAX_EPOCH", "4", "OPTIM.LR_SCHEDULER", "cosine",
]  # fmt: skip


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    temp = 2.0
    expected = 0.0
    for srow, trow in zip(s.tolist(), t.tolist()):
        zs = sum(math.exp(v / temp) for v in srow)
        zt = sum(math.exp(v / temp) for v in trow)
        for sv, tv in zip(srow, trow):
            p, q = math.exp(tv / temp) / zt, math.exp(sv / temp) / zs
            expected += p * math.log(p / q)
    expected *= temp**2
    assert kd_loss(s, t, temp, "batchmean").item() == pytest.approx(expected / 2, rel=1e-5)
    assert kd_loss(s, t, temp, "numel").item() == pytest.approx(expected / 6, rel=1e-5)
    assert kd_loss(t, t, temp).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="KD_REDUCTION"):
        kd_loss(s, t, temp, "mean")


@pytest.fixture(scope="module")
def boost_run(tmp_path_factory, data_root):
    """One phase-1 run shared by the tests below: tiny-vit student, small-vit teacher."""
    import json

    import train
    from tests.conftest import train_argv

    out = tmp_path_factory.mktemp("boost")
    assert train.main(train_argv(data_root, out, "CasPL_Boost", *BOOST_OPTS)) == 0
    return out, json.loads((out / "results.json").read_text())


def test_boosting_lowers_heldout_kl_to_teacher(boost_run):
    out, res = boost_run
    before, after = res["kd_heldout_before"], res["kd_heldout_after"]
    print(f"held-out KL to the teacher: unboosted student {before:.4f} -> boosted {after:.4f}")
    assert after < before
    log = (out / "log.txt").read_text()
    assert "Unlabeled pool" in log and "Boosting prompts:" in log


def test_boost_file_round_trips_and_refuses_other_backbone(boost_run, tiny_clip):
    out, _ = boost_run
    payload = safe_load(out / "boost_prompts.pt")
    assert payload["meta"]["student"]["backbone"] == "tiny-vit"
    assert payload["meta"]["teacher"]["name"] == "small-vit"
    assert len(payload["text"]) == 2 and payload["text"][0].shape == (2, 64)
    groups, meta = load_boost_prompts(str(out), tiny_clip, "tiny-vit")  # a folder works too
    for param, saved in zip(groups.text.tokens, payload["text"]):
        assert torch.equal(param, saved) and not param.requires_grad
    with pytest.raises(ValueError, match="small-vit"):
        load_boost_prompts(str(out / "boost_prompts.pt"), build_clip("small-vit"), "small-vit")


def test_phase1_loader_has_no_labels(data_root, tmp_path):
    from caspl.config import build_arg_parser, setup_cfg
    from caspl.engine import build_trainer
    from tests.conftest import train_argv

    cfg = setup_cfg(
        build_arg_parser().parse_args(train_argv(data_root, tmp_path, "CasPL_Boost", *BOOST_OPTS))
    )
    trainer = build_trainer(cfg)
    batch = next(iter(trainer.train_loader_x))
    assert "label" not in batch and batch["img"].ndim == 4
    # The unlabeled pool is the whole train split (every class), not the few-shot subset.
    assert len(trainer.train_loader_x.dataset) == len(trainer.dm.dataset.train_x)


def test_missing_boost_file_says_how_to_make_it(tiny_clip, tmp_path):
    with pytest.raises(FileNotFoundError, match="CasPL_Boost"):
        load_boost_prompts(str(tmp_path / "nope.pt"), tiny_clip, "tiny-vit")


def _capture_block_inputs(block):
    seen = []
    handle = block.register_forward_pre_hook(lambda m, args: seen.append(args[0].permute(1, 0, 2).detach()))
    return seen, handle


def test_cascade_order_text_adapting_then_boosting_vision_boosting_then_adapting(tiny_clip):
    d_t, d_v = 64, 64
    boost = CascadeGroups(PromptGroup(3, d_t, 1), PromptGroup(2, d_v, 1))

    class Method(PromptedCLIP):
        def __init__(self):
            super().__init__(tiny_clip, ["dog.", "cat."], [2], cascade=boost)
            self.prompt_learner.text = PromptGroup(2, d_t, 1)
            self.prompt_learner.vision = PromptGroup(4, d_v, 1)

        def method_text_tokens(self):
            return [self.prompt_learner.text()]

        def method_vision_tokens(self):
            return [self.prompt_learner.vision()]

    model = Method()
    seen, h = _capture_block_inputs(tiny_clip.transformer.resblocks[0])
    with torch.no_grad():
        model.encode_text()
    h.remove()
    pos = tiny_clip.positional_embedding
    x = seen[0][0]  # class 0
    torch.testing.assert_close(x[1:3], model.prompt_learner.text.tokens[0] + pos[1:3])  # adapting first
    torch.testing.assert_close(x[3:6], boost.text.tokens[0] + pos[3:6])  # then boosting
    # Vision: [CLS][16 patches][boosting][adapting], taken after ln_pre at block 0's input.
    seen, h = _capture_block_inputs(tiny_clip.visual.transformer.resblocks[0])
    with torch.no_grad():
        model.encode_image(torch.randn(1, 3, 32, 32))
    h.remove()
    ln = tiny_clip.visual.ln_pre
    x = seen[0][0]
    assert x.shape[0] == 1 + 16 + 2 + 4
    torch.testing.assert_close(x[17:19], ln(boost.vision.tokens[0]))
    torch.testing.assert_close(x[19:23], ln(model.prompt_learner.vision.tokens[0]))


def _empty_boost_file(path: Path, clip_model) -> None:
    empty = CascadeGroups(PromptGroup(0, 64, 0), PromptGroup(0, 64, 0))
    save_boost_prompts(
        path, empty, {"student": {"backbone": "tiny-vit", "text_width": 64, "vision_width": 64}}
    )


def test_empty_boost_group_equals_base_method(run_train, tmp_path, tiny_clip):
    from tests.test_engine import OPTS  # the engine's minimal trainer and its settings

    if "CasPL_EngineTestTrainer" not in TRAINER_REGISTRY:
        cascaded(TRAINER_REGISTRY.get("EngineTestTrainer"))
    _empty_boost_file(tmp_path / "empty.pt", tiny_clip)
    base = run_train(tmp_path / "base", "EngineTestTrainer", *OPTS)
    cas = run_train(
        tmp_path / "cas",
        "CasPL_EngineTestTrainer",
        *OPTS,
        "TRAINER.CASPL.BOOST_PROMPTS",
        str(tmp_path / "empty.pt"),
    )
    assert cas["metrics"] == base["metrics"]
    a = safe_load(tmp_path / "base/prompt_learner/model.pth.tar-3")["state_dict"]
    b = safe_load(tmp_path / "cas/prompt_learner/model.pth.tar-3")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_boost_tokens_unchanged_by_phase2(boost_run, tmp_path, data_root):
    from caspl.config import build_arg_parser, setup_cfg
    from caspl.engine import build_trainer
    from tests.conftest import train_argv
    from tests.test_engine import OPTS

    if "CasPL_EngineTestTrainer" not in TRAINER_REGISTRY:
        cascaded(TRAINER_REGISTRY.get("EngineTestTrainer"))
    out, _ = boost_run
    saved = safe_load(out / "boost_prompts.pt")
    argv = train_argv(
        data_root, tmp_path / "p2", "CasPL_EngineTestTrainer", *OPTS, "TRAINER.CASPL.BOOST_PROMPTS", str(out)
    )
    cfg = setup_cfg(build_arg_parser().parse_args(argv))
    trainer = build_trainer(cfg)
    trainer.train()
    for tower in ("text", "vision"):
        for param, before in zip(getattr(trainer.model.cascade, tower).tokens, saved[tower]):
            assert torch.equal(param.detach(), before), f"{tower} boosting tokens changed"
    # ... while the adapting prompts did train.
    first = safe_load(tmp_path / "p2/prompt_learner/model.pth.tar-1")["state_dict"]["text.tokens.0"]
    assert not torch.equal(first, trainer.model.prompt_learner.text.tokens[0].detach())


def test_context_overflow_names_the_class(tiny_clip):
    long_name = " ".join(["word"] * 70)
    with pytest.raises(ValueError, match="word word"):
        PromptedCLIP(tiny_clip, [f"{long_name}."], [8])
