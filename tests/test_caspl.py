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
    assert after < 0.5 * before  # a clear drop (about tenfold here), not one a float could tip
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


def test_boost_file_records_the_last_epochs_training_loss(boost_run):
    import re

    out, res = boost_run
    meta = safe_load(out / "boost_prompts.pt")["meta"]
    epochs = meta["epochs"]
    # The last log line of the last epoch shows the epoch's running mean of the per-batch KD loss.
    lines = [
        l for l in (out / "log.txt").read_text().splitlines() if l.startswith(f"epoch [{epochs}/{epochs}]")
    ]
    printed_mean = float(re.search(r"loss \S+ \((\S+)\)", lines[-1]).group(1))
    # Batch-size weighted in the file, unweighted in the log: equal when the batches are (here: 24 x 8),
    # up to the log's 4 decimals; the epochs before differ by more (their means fall ~5% per epoch).
    assert meta["final_kd_loss"] == pytest.approx(printed_mean, abs=1e-4)
    assert meta["final_kd_loss"] > 0 and meta["seed"] == 1 and meta["classes"] == "all"


def test_teacher_text_features_are_clips_over_any_number_of_classes():
    import clip
    import torch.nn.functional as F

    from trainers.caspl import TEXT_CHUNK, FrozenTeacher

    names = [f"thing {i}" for i in range(TEXT_CHUNK + 88)]  # more than one text-tower pass
    teacher = FrozenTeacher(build_clip("small-vit"), names, "a photo of a {}.", "Synthetic")
    with torch.no_grad():
        direct = teacher.clip.encode_text(clip.tokenize([f"a photo of a {n}." for n in names]))
    torch.testing.assert_close(teacher.text_features, F.normalize(direct.float(), dim=-1))


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
        data_root, tmp_path / "p2", "CasPL_EngineTestTrainer", *OPTS, "TRAINER.CASPL.BOOST_PROMPTS", str(out),
        "OPTIM.WEIGHT_DECAY", "0.0",  # the adapting prompts below must move by gradients, not by decay alone
    )  # fmt: skip
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


# ---------------------------------------------------------------------------- configs
REPO = Path(__file__).resolve().parents[1]
TRAINER_CFGS = REPO / "configs/trainers"
CASCADED_METHODS = ["CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC"]


def _merged(path: Path):
    import trainers  # noqa: F401  (registers every trainer's config node)
    from caspl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))  # raises on unknown keys and on type mismatches
    return cfg


def test_caspl_configs_merge_and_keep_the_base_methods_settings():
    from caspl.config import get_cfg_default
    from tests.test_caspl_fidelity import AUTHORS_PHASE2

    files = sorted(TRAINER_CFGS.glob("CasPL_*/*.yaml"))
    assert {p.parent.name for p in files} >= {"CasPL_Boost", *(f"CasPL_{m}" for m in CASCADED_METHODS)}
    for path in files:
        cfg = _merged(path)
        method = path.parent.name.removeprefix("CasPL_")
        if method == "Boost" or f"{path.parent.name}/{path.stem}" in AUTHORS_PHASE2:
            continue  # the authors' own CasPL configs: tests/test_caspl_fidelity.py checks their values
        base_file = TRAINER_CFGS / method / path.name
        assert base_file.is_file(), f"{path} has no {method} config of the same name"
        caspl_node = cfg.TRAINER.CASPL
        assert caspl_node.BOOST_PROMPTS == "", "the sweep scripts set BOOST_PROMPTS per run"
        assert caspl_node.BOOST_TRAINABLE is False  # phase 2 keeps the boosting prompts frozen
        if method == "PromptSRC" and not path.stem.startswith("demo_"):  # the demos keep their own choice
            assert caspl_node.REG_REFERENCE == "clip"  # the authors' reference: plain CLIP
        # Everything but TRAINER.CASPL is the base method's file: the two cannot drift apart.
        cfg.TRAINER.CASPL = get_cfg_default().TRAINER.CASPL
        assert cfg == _merged(base_file), f"{path} differs from {base_file} outside TRAINER.CASPL"


def test_scripts_find_a_config_for_every_cascaded_trainer_and_setting():
    import os
    import shlex
    import subprocess

    trainers_ = [f"CasPL_{m}" for m in CASCADED_METHODS] + ["CasPL_ZS"]
    script = (
        "source scripts/common.sh; caspl_setup; "
        f"for t in {' '.join(trainers_)}; do TRAINER=$t; for s in b2n xd fewshot; do "
        'config_file "$t" "$(default_config "$s" "$t")"; echo; '
        "for d in dtd imagenet; do SWEEP_NAME=${s/b2n/base2new}; plan_boost $d 1; done; done; done; "
        'for c in "${PLAN_CMD[@]}"; do echo "$c"; done'
    )
    env = {"PATH": os.environ["PATH"]}  # none of the caller's sweep settings
    res = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    paths = lines[: 3 * len(trainers_)]
    boosts = {(a := shlex.split(c))[a.index("--config-file") + 1] for c in lines[3 * len(trainers_) :]}
    assert boosts == {
        f"configs/trainers/CasPL_Boost/vit_b16_l14_ep20_{name}.yaml"
        for name in ("8+8ctx_l12", "batch128_8+8ctx_l12", "batch128_4+4ctx_l1", "batch128_4+4ctx_l3")
    }
    for path in [*paths, *boosts]:
        assert (REPO / path).is_file(), path
        _merged(REPO / path)


def test_promptkd_boost_config_is_what_its_comments_say():
    from types import SimpleNamespace

    from clip.model import CLIP

    from caspl.bench.shapes import ARCHS
    from caspl.engine.clip_trainer import count_parameters
    from trainers.caspl import CasPL_Boost, make_boost_groups

    cfg = _merged(TRAINER_CFGS / "CasPL_Boost/vit_b16_l14_ep20_4+4ctx_promptkd.yaml")
    boost = cfg.TRAINER.CASPL.BOOST
    assert (cfg.MODEL.BACKBONE.NAME, cfg.TRAINER.CASPL.TEACHER.NAME) == ("ViT-B/16", "ViT-L/14")
    assert (boost.N_CTX_TEXT, boost.N_CTX_VISION) == (4, 4)
    assert (boost.PROMPT_DEPTH_TEXT, boost.PROMPT_DEPTH_VISION) == (9, 9)
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR_SCHEDULER, cfg.OPTIM.MAX_EPOCH) == ("sgd", "cosine", 20)
    assert (cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.005, 8)  # PromptKD's
    assert (boost.TEMPERATURE, boost.KD_WEIGHT, boost.KD_REDUCTION) == (1.0, 1000.0, "numel")
    assert cfg.INPUT.SIZE == (ARCHS["ViT-B/16"][1],) * 2

    # "numel with KD_WEIGHT w == batchmean with KD_WEIGHT w / n_classes": same loss, same gradients.
    n_classes = 47
    torch.manual_seed(0)
    student = torch.randn(8, n_classes, requires_grad=True)
    teacher = torch.randn(8, n_classes)
    other = cfg.clone()
    other.defrost()
    other.TRAINER.CASPL.BOOST.KD_REDUCTION = "batchmean"
    other.TRAINER.CASPL.BOOST.KD_WEIGHT = boost.KD_WEIGHT / n_classes
    losses, grads = [], []
    for c in (cfg, other):
        loss = CasPL_Boost.kd(SimpleNamespace(cfg=c), student, teacher)
        losses.append(loss.detach())
        grads.append(torch.autograd.grad(loss, student)[0])
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])

    # "The boosting prompts are < 0.1% of the student's parameters" (the paper), at depths CLIP has.
    with torch.device("meta"):
        vit_b16 = CLIP(*ARCHS["ViT-B/16"])
    assert boost.PROMPT_DEPTH_TEXT <= len(vit_b16.transformer.resblocks)
    assert boost.PROMPT_DEPTH_VISION <= len(vit_b16.visual.transformer.resblocks)
    no_init = boost.clone()
    no_init.CTX_INIT = ""  # the meta-device model has no embeddings to initialise from
    groups = make_boost_groups(vit_b16, no_init)
    share = count_parameters(groups) / count_parameters(vit_b16)
    print(f"boosting prompts: {count_parameters(groups):,} parameters, {100 * share:.4f}% of ViT-B/16")
    assert 0 < share < 1e-3


# ---------------------------------------------------------------------------- CasPL_ZS
def _zs_trainer(data_root, out, boost_file):
    from tests.test_methods_train import build

    return build(
        data_root,
        out,
        "CasPL_ZS",
        "TRAINER.CASPL.PREC",
        "fp32",
        "TRAINER.CASPL.BOOST_PROMPTS",
        str(boost_file),
    )


@torch.no_grad()
def _plain_clip_logits(clip_model, classnames, images):
    """CLIP's logits for the text CasPL_ZS encodes around its boosting tokens: "<class>."."""
    import clip
    import torch.nn.functional as F

    text = F.normalize(
        clip_model.encode_text(clip.tokenize([f"{c.replace('_', ' ')}." for c in classnames])), dim=-1
    )
    return clip_model.logit_scale.exp() * F.normalize(clip_model.encode_image(images), dim=-1) @ text.t()


def test_caspl_zs_without_boosting_tokens_is_plain_clip(data_root, tmp_path, tiny_clip):
    import json

    _empty_boost_file(tmp_path / "empty.pt", tiny_clip)
    trainer = _zs_trainer(data_root, tmp_path / "zs", tmp_path / "empty.pt")
    trainer.train()  # nothing trains: evaluates and writes results.json
    accuracy = json.loads((tmp_path / "zs/results.json").read_text())["metrics"]["accuracy"]
    correct = total = 0
    trainer.before_evaluation()
    with torch.no_grad():
        for batch in trainer.dm.test_loader:
            expected = _plain_clip_logits(tiny_clip, trainer.classnames, batch["img"])
            logits = trainer.model_inference(batch["img"])
            torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
            correct += (expected.argmax(-1) == batch["label"]).sum().item()
            total += len(batch["label"])
    assert accuracy == pytest.approx(100.0 * correct / total)


def test_caspl_zs_evaluates_the_boosted_clip_of_phase_1(boost_run, data_root, tmp_path, tiny_clip):
    from caspl.vlm.teacher import student_preprocess
    from trainers.caspl import FrozenTeacher

    out, res = boost_run
    trainer = _zs_trainer(data_root, tmp_path / "zs", out / "boost_prompts.pt")
    student_input = student_preprocess(
        trainer.cfg
    )  # the trainer's teacher maps the student's input the same way
    teacher = FrozenTeacher(
        build_clip("small-vit"), trainer.classnames, "a photo of a {}.", "Synthetic", student_input
    )
    trainer.set_model_mode("eval")
    trainer.before_evaluation()
    total = count = 0.0
    with torch.no_grad():
        for batch in trainer.val_loader:  # phase 1's held-out split
            logits = trainer.model_inference(batch["img"])
            plain = _plain_clip_logits(tiny_clip, trainer.classnames, batch["img"])
            assert not torch.allclose(logits, plain, atol=1e-3), "the boosting prompts changed nothing"
            total += kd_loss(logits, teacher(batch["img"]), 1.0).item() * len(logits)
            count += len(logits)
    # The boosted CLIP that CasPL_ZS scores is the student phase 1 ended with: same KL to the teacher.
    assert total / count == pytest.approx(res["kd_heldout_after"], rel=1e-4)
    assert res["kd_heldout_after"] < res["kd_heldout_before"]


# ---------------------------------------------------------------------------- phase 2 trainers
def _method_opts(method: str, boost_dir: Path, *extra: str) -> list[str]:
    from tests.test_methods_train import COMMON, METHODS

    return [*COMMON, *METHODS[method], "TRAINER.CASPL.BOOST_PROMPTS", str(boost_dir), *extra]


def test_reg_reference_picks_promptsrcs_frozen_reference(boost_run, data_root, tmp_path):
    from tests.test_methods_train import build

    out, _ = boost_run
    refs = {}
    for choice in ("boosted", "clip"):
        opts = _method_opts("PromptSRC", out, "TRAINER.CASPL.REG_REFERENCE", choice)
        trainer = build(data_root, tmp_path / choice, "CasPL_PromptSRC", *opts)
        refs[choice] = (trainer.model.reference_text_features, trainer.reference_vision_tokens())
    plain = build(data_root, tmp_path / "plain", "PromptSRC", *_method_opts("PromptSRC", out))
    assert not torch.allclose(refs["boosted"][0], refs["clip"][0], atol=1e-4)
    assert len(refs["boosted"][1]) == 1 and refs["clip"][1] == []  # the image side follows the same choice
    torch.testing.assert_close(refs["clip"][0], plain.model.reference_text_features, rtol=0, atol=0)


@pytest.mark.parametrize("method", CASCADED_METHODS)
def test_cascaded_method_trains_its_prompts_around_frozen_boosting_prompts(
    boost_run, data_root, tmp_path, method, capsys
):
    from tests.test_methods_train import build, fixed_batch

    out, _ = boost_run
    saved = safe_load(out / "boost_prompts.pt")
    # No weight decay: it alone moves every registered parameter, so "the prompts changed" would hold even
    # with no gradient reaching them.
    opts = _method_opts(method, out, "OPTIM.MAX_EPOCH", "1", "OPTIM.WEIGHT_DECAY", "0.0")
    trainer = build(data_root, tmp_path, f"CasPL_{method}", *opts)
    assert f"Cascading boosting prompts from {out}" in capsys.readouterr().out
    before = {k: v.clone() for k, v in trainer.model.prompt_learner.state_dict().items()}
    trainer.train()
    after = trainer.model.prompt_learner.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), f"{method}'s prompts did not train"
    for tower in ("text", "vision"):
        for param, tokens in zip(getattr(trainer.model.cascade, tower).tokens, saved[tower], strict=True):
            assert torch.equal(param.detach(), tokens) and not param.requires_grad
    assert "cascade" not in trainer.get_model_names() and not (tmp_path / "cascade").exists()
    # The cascade is wired into the method's forward: moving the boosting tokens moves the logits.
    images, _ = fixed_batch(trainer)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model(images)
        for param in trainer.model.cascade.parameters():
            param.add_(torch.randn_like(param))  # random: LayerNorm ignores a constant shift
        assert not torch.allclose(trainer.model(images), logits, atol=1e-4)


def test_trainable_boosting_prompts_train_and_are_checkpointed(boost_run, data_root, tmp_path):
    from tests.test_methods_train import build, fixed_batch

    out, _ = boost_run
    saved = safe_load(out / "boost_prompts.pt")
    # No weight decay: the cascade must move by its gradients, not by decay alone.
    opts = _method_opts(
        "PromptSRC", out, "TRAINER.CASPL.BOOST_TRAINABLE", "True", "TRAINER.CASPL.REG_REFERENCE", "boosted",
        "OPTIM.WEIGHT_DECAY", "0.0",
    )  # fmt: skip
    trainer = build(data_root, tmp_path / "run", "CasPL_PromptSRC", *opts)
    trainer.train()
    cascade = trainer.model.cascade.state_dict()
    assert not torch.equal(cascade["text.tokens.0"], saved["text"][0])
    assert not torch.equal(cascade["vision.tokens.0"], saved["vision"][0])
    # PromptSRC's reference stays the boosted CLIP of phase 1 on both sides, however the cascade moves.
    reference = trainer.reference_vision_tokens()[0]
    assert len(reference) == len(saved["vision"])
    assert all(torch.equal(r, v) for r, v in zip(reference, saved["vision"]))
    ckpt = safe_load(tmp_path / "run/cascade/model.pth.tar-2")["state_dict"]
    assert ckpt.keys() == cascade.keys() and all(torch.equal(ckpt[k], cascade[k]) for k in ckpt)
    # An evaluation run restores the fine-tuned boosting prompts, not the phase-1 file's.
    images, _ = fixed_batch(trainer)
    fresh = build(data_root, tmp_path / "eval", "CasPL_PromptSRC", *opts)
    fresh.load_model(str(tmp_path / "run"), epoch=2)
    for model in (trainer, fresh):
        model.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(fresh.model(images), trainer.model(images))
