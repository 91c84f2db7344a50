"""CasPL as its authors ran it (issue 10): the shipped configs carry the values of the authors' released code
(github Martinser/CasPL: configs/, train_script/, scripts/caspl/) and of the paper's appendix, and the
sweep scripts launch them the authors' way (phase 1 once per dataset, shared by the seeds)."""

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CFGS = REPO / "configs/trainers"

# The authors' phase-2 configs (folder/name) and the one CasPL_IVLP mirror of their CasPL_PromptSRC setting;
# tests/test_caspl.py keeps the other CasPL_<Method> configs equal to their base method's.
AUTHORS_PHASE2 = {
    "CasPL_PromptSRC/vit_b16_c2_ep20_batch4_8+8ctx_l12",
    "CasPL_PromptSRC/vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12",
    "CasPL_PromptSRC/vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3",
    "CasPL_IVLP/vit_b16_c2_ep20_batch4_8+8ctx_l12",
    "CasPL_IVLP/vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12",
    "CasPL_IVLP/vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3",
    "CasPL_MaPLe/vit_b16_c8_ep5_batch4_8ctx_l12",
    "CasPL_MaPLe/vit_b16_c8_ep5_batch4_8ctx_cross_datasets_l12",
    "CasPL_CoOp/vit_b16_ep50",
    "CasPL_CoOp/vit_b16_ep10_ctxv1",
    "CasPL_CoCoOp/vit_b16_c8_ep10_batch1",
}

# The paper's appendix table "Text template utilized by senior CLIP teacher"; "other datasets" below.
APPENDIX_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "Food101": "a photo of {}, a type of food.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "UCF101": "a photo of a person doing {}.",
    **{n: "a photo of a {}." for n in ("ImageNet", "Caltech101", "StanfordCars", "SUN397", "ImageNetV2")},
}


def merged(rel: str):
    import trainers  # noqa: F401  (registers every trainer's config node)
    from caspl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.merge_from_file(str(CFGS / f"{rel}.yaml"))
    return cfg


def optim(cfg) -> tuple:
    o = cfg.OPTIM
    return (o.NAME, o.LR, o.MAX_EPOCH, o.LR_SCHEDULER, o.WARMUP_EPOCH, o.WARMUP_TYPE, o.WARMUP_CONS_LR)


# ---------------------------------------------------------------------------- item 1, 5, 8: phase 1
@pytest.mark.parametrize(
    "name, batch, tokens, depth",
    [
        ("vit_b16_l14_ep20_8+8ctx_l12", 4, 8, 12),  # configs/trainers/CasPL/vit_b16_c2_ep20_batch4_8+8ctx_l12
        ("vit_b16_l14_ep20_batch128_8+8ctx_l12", 128, 8, 12),  # ..._batch128_lr0025_8+8ctx_l12 (ImageNet)
        ("vit_b16_l14_ep20_batch128_4+4ctx_l1", 128, 4, 1),  # ..._batch128_lr0025_4+4ctx_l1 (their xd)
        ("vit_b16_l14_ep20_batch128_4+4ctx_l3", 128, 4, 3),  # ..._batch128_lr0025_4+4ctx_l3 (CoCoOp xd)
    ],
)
def test_phase1_configs_are_the_authors(name, batch, tokens, depth):
    cfg = merged(f"CasPL_Boost/{name}")
    boost, teacher = cfg.TRAINER.CASPL.BOOST, cfg.TRAINER.CASPL.TEACHER
    assert (cfg.MODEL.BACKBONE.NAME, teacher.NAME, teacher.PATH) == ("ViT-B/16", "ViT-L/14", "")
    assert (boost.N_CTX_TEXT, boost.N_CTX_VISION) == (tokens, tokens)
    assert (boost.PROMPT_DEPTH_TEXT, boost.PROMPT_DEPTH_VISION) == (depth, depth)
    assert optim(cfg) == ("sgd", 0.0025, 20, "cosine", 1, "constant", 1e-5)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == batch
    assert (boost.TEMPERATURE, boost.KD_WEIGHT, boost.KD_REDUCTION) == (1.0, 1.0, "batchmean")
    assert (teacher.TEMPLATE, boost.CLASSES, boost.UNLABELED, boost.CTX_INIT) == (
        "dataset", "all", "train", "a photo of a",
    )  # fmt: skip
    assert cfg.INPUT.TRANSFORMS == ("random_resized_crop", "random_flip", "normalize")
    # The CASPL node's defaults are the same setting, so a bare `--trainer CasPL_Boost` runs it too.
    if name == "vit_b16_l14_ep20_8+8ctx_l12":
        from caspl.config import get_cfg_default

        assert get_cfg_default().TRAINER.CASPL == cfg.TRAINER.CASPL
        # 8x512x12 + 8x768x12 = 122,880 values, 0.08% of ViT-B/16 (README; the paper: < 0.1%).
        from clip.model import CLIP

        from caspl.bench.shapes import ARCHS
        from caspl.engine.clip_trainer import count_parameters
        from trainers.caspl import make_boost_groups

        with torch.device("meta"):
            vit_b16 = CLIP(*ARCHS["ViT-B/16"])
            groups = make_boost_groups(vit_b16, boost)  # 8 > 4 tokens: CTX_INIT is not read
        assert count_parameters(groups) == 122_880
        assert round(100 * count_parameters(groups) / count_parameters(vit_b16), 2) == 0.08


def test_promptkd_phase1_stays_as_a_named_alternative_with_its_source():
    path = CFGS / "CasPL_Boost/vit_b16_l14_ep20_4+4ctx_promptkd.yaml"
    assert "zhengli97/PromptKD" in path.read_text()
    cfg = merged("CasPL_Boost/vit_b16_l14_ep20_4+4ctx_promptkd")
    boost = cfg.TRAINER.CASPL.BOOST
    assert (boost.N_CTX_TEXT, boost.PROMPT_DEPTH_TEXT, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (
        4, 9, 0.005, 8,
    )  # fmt: skip
    assert (boost.KD_WEIGHT, boost.KD_REDUCTION, cfg.TRAINER.CASPL.TEACHER.TEMPLATE) == (
        1000.0, "numel", "a photo of a {}.",
    )  # fmt: skip


def test_authors_kd_is_kl_summed_over_classes_per_image_times_t_squared():
    """Theirs: F.kl_div(log_softmax(s/T), softmax(t/T), size_average=False) * T^2 / batch, weight 1."""
    from types import SimpleNamespace

    from trainers.caspl import CasPL_Boost

    torch.manual_seed(0)
    student, teacher = torch.randn(4, 10) * 3, torch.randn(4, 10) * 3
    cfg = merged("CasPL_Boost/vit_b16_l14_ep20_8+8ctx_l12")
    for temperature in (1.0, 2.0):
        cfg.defrost()
        cfg.TRAINER.CASPL.BOOST.TEMPERATURE = temperature
        p_t = torch.softmax(teacher / temperature, dim=1)
        log_q_s = torch.log_softmax(student / temperature, dim=1)
        theirs = torch.nn.functional.kl_div(log_q_s, p_t, reduction="sum") * temperature**2 / 4
        ours = CasPL_Boost.kd(SimpleNamespace(cfg=cfg), student, teacher)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_teacher_template_per_dataset_is_the_appendix_table(tiny_clip):
    import clip
    import torch.nn.functional as F

    from caspl.vlm.templates import dataset_template
    from trainers.caspl import FrozenTeacher, teacher_template

    for dataset, template in APPENDIX_TEMPLATES.items():
        assert teacher_template(dataset) == template, dataset
        assert dataset_template(dataset) == template  # CoOp's table, which the authors' code reads, agrees
    assert teacher_template("SomeNewDataset") == "a photo of a {}."
    names = ["banded", "zig_zagged"]
    teacher = FrozenTeacher(tiny_clip, names, "dataset", "DescribableTextures")
    with torch.no_grad():
        expected = F.normalize(
            tiny_clip.encode_text(clip.tokenize(["banded texture.", "zig zagged texture."]))
        )
    torch.testing.assert_close(teacher.text_features, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- item 2: CTX_INIT > 4 tokens
def test_ctx_init_with_more_than_four_tokens_initialises_randomly_and_says_so(tiny_clip, capsys):
    from caspl.config import get_cfg_default
    from caspl.vlm.prompted import init_tokens_from_text
    from trainers.caspl import make_boost_groups

    boost = get_cfg_default().TRAINER.CASPL.BOOST.clone()
    boost.PROMPT_DEPTH_TEXT = boost.PROMPT_DEPTH_VISION = 2
    words = init_tokens_from_text(tiny_clip, "a photo of a")
    torch.manual_seed(0)
    groups = make_boost_groups(tiny_clip, boost)  # 8 tokens, CTX_INIT "a photo of a": no error
    assert "not used: N_CTX_TEXT 8 > 4" in capsys.readouterr().out
    layer0 = groups.text.tokens[0]
    assert layer0.shape == (8, words.shape[1])
    assert not torch.allclose(layer0[:4], words, atol=1e-3)
    assert 0.01 < layer0.std().item() < 0.03  # N(0, 0.02^2), as every deeper token
    boost.N_CTX_TEXT = 4  # <= 4 tokens: the words of CTX_INIT, nothing logged
    torch.testing.assert_close(make_boost_groups(tiny_clip, boost).text.tokens[0].detach(), words)
    assert "not used" not in capsys.readouterr().out


# ---------------------------------------------------------------------------- item 4: phase 2
@pytest.mark.parametrize(
    "rel, tokens, depth, lr, epochs, batch, gpa",
    [
        ("CasPL_PromptSRC/vit_b16_c2_ep20_batch4_8+8ctx_l12", 8, 12, 0.0025, 20, 4, (15, 1)),
        ("CasPL_PromptSRC/vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12", 8, 12, 0.0025, 50, 4, (30, 30)),
        ("CasPL_PromptSRC/vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3", 8, 3, 0.0025, 20, 4, (6, 10)),
        ("CasPL_IVLP/vit_b16_c2_ep20_batch4_8+8ctx_l12", 8, 12, 0.0025, 20, 4, None),
        ("CasPL_MaPLe/vit_b16_c8_ep5_batch4_8ctx_l12", 8, 12, 0.0035, 5, 4, None),
        ("CasPL_MaPLe/vit_b16_c8_ep5_batch4_8ctx_cross_datasets_l12", 8, 12, 0.0026, 2, 4, None),
        ("CasPL_CoOp/vit_b16_ep50", 8, 1, 0.002, 50, 32, None),
        ("CasPL_CoOp/vit_b16_ep10_ctxv1", 8, 1, 0.0035, 10, 4, None),
        ("CasPL_CoCoOp/vit_b16_c8_ep10_batch1", 8, 1, 0.002, 10, 1, None),
    ],
)
def test_phase2_configs_are_the_authors(rel, tokens, depth, lr, epochs, batch, gpa):
    assert rel in AUTHORS_PHASE2
    cfg = merged(rel)
    assert optim(cfg) == ("sgd", lr, epochs, "cosine", 1, "constant", 1e-5)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.MODEL.BACKBONE.NAME) == (batch, "ViT-B/16")
    caspl = cfg.TRAINER.CASPL
    assert (caspl.BOOST_PROMPTS, caspl.BOOST_TRAINABLE, caspl.REG_REFERENCE) == ("", False, "clip")
    method = rel.split("/")[0].removeprefix("CasPL_")
    node = cfg.TRAINER[method.upper()]
    if method in ("PromptSRC", "IVLP"):
        assert (node.N_CTX_TEXT, node.N_CTX_VISION) == (tokens, tokens)
        assert (node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION) == (depth, depth)
    elif method == "MaPLe":
        assert (node.N_CTX, node.PROMPT_DEPTH) == (tokens, depth)
    else:  # CoOp / CoCoOp: one shallow text group; with CTX_INIT, CoOp's rule counts its words
        n = len(node.CTX_INIT.split()) if node.CTX_INIT else node.N_CTX
        assert n == tokens
    if gpa is not None:
        assert (node.GPA_MEAN, node.GPA_STD, node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT) == (*gpa, 25, 10)


# ---------------------------------------------------------------------------- the scripts (DRY_RUN)
def dry_run(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    full = {"PATH": os.environ["PATH"], "DRY_RUN": "1", "OUT": str(tmp_path / "out"), "DATA": "/data", **env}
    res = subprocess.run(["bash", f"scripts/{script}"], cwd=REPO, env=full, capture_output=True, text=True)
    lines = res.stdout.splitlines()
    runs = []
    for i, line in enumerate(lines):
        match = re.match(r"^\[\d+/\d+\] (.+) -> (\S+)$", line)
        if match:
            runs.append((match.group(1), match.group(2), shlex.split(lines[i + 1])))
    return res, runs


def opt(argv: list[str], key: str) -> str | None:
    values = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == key]
    return values[-1] if values else None


def test_phase1_runs_once_per_dataset_and_every_seed_reads_it(tmp_path):
    res, runs = dry_run("base2new.sh", tmp_path, DATASETS="dtd imagenet", SEEDS="1 2 3")
    assert res.returncode == 0, res.stderr
    boosts = [r for r in runs if r[0].startswith("boost")]
    assert [r[0] for r in boosts] == ["boost dtd seed1", "boost imagenet seed1"]
    assert boosts[0][1].endswith("boost/dtd/vit_b16_l14_ep20_8+8ctx_l12/seed1")
    assert boosts[1][1].endswith("boost/imagenet/vit_b16_l14_ep20_batch128_8+8ctx_l12/seed1")
    assert opt(boosts[0][2], "--seed") == "1"
    phase2 = [r for r in runs if not r[0].startswith("boost")]
    assert len(phase2) == 2 * 3 * 2
    for what, _, argv in phase2:
        dataset = what.split()[2]
        boost = next(b for b in boosts if f"/boost/{dataset}/" in b[1])
        assert opt(argv, "TRAINER.CASPL.BOOST_PROMPTS") == boost[1] + "/boost_prompts.pt"
        assert "CasPL_PromptSRC/vit_b16_c2_ep20_batch4_8+8ctx_l12.yaml" in opt(argv, "--config-file")
    assert {opt(a, "--seed") for _, _, a in phase2} == {"1", "2", "3"}


def test_boost_seeds_each_boosts_once_per_seed_and_other_values_are_refused(tmp_path):
    res, runs = dry_run("fewshot.sh", tmp_path, DATASETS="dtd", SEEDS="1 2", SHOTS="4", BOOST_SEEDS="each")
    assert res.returncode == 0, res.stderr
    assert [r[0] for r in runs] == [
        "boost dtd seed1", "4-shot dtd seed1 CasPL_PromptSRC", "boost dtd seed2", "4-shot dtd seed2 CasPL_PromptSRC",
    ]  # fmt: skip
    assert opt(runs[3][2], "TRAINER.CASPL.BOOST_PROMPTS").endswith("/seed2/boost_prompts.pt")
    _, runs = dry_run("fewshot.sh", tmp_path, DATASETS="dtd", SEEDS="1 2", SHOTS="4", BOOST_SEEDS="7")
    assert [r[0] for r in runs if r[0].startswith("boost")] == ["boost dtd seed7"]
    res, _ = dry_run("fewshot.sh", tmp_path, DATASETS="dtd", SEEDS="1", BOOST_SEEDS="1 2")
    assert res.returncode == 2 and "BOOST_SEEDS must be a seed number or 'each'" in res.stderr


@pytest.mark.parametrize(
    "trainer, b2n, xd, xd_boost",
    [
        (
            "CasPL_PromptSRC",
            "vit_b16_c2_ep20_batch4_8+8ctx_l12",
            "vit_b16_c2_ep20_batch4_8+8ctx_cross_datasets_l3",
            "l3",
        ),
        (
            "CasPL_MaPLe",
            "vit_b16_c8_ep5_batch4_8ctx_l12",
            "vit_b16_c8_ep5_batch4_8ctx_cross_datasets_l12",
            "l1",
        ),
        ("CasPL_CoOp", "vit_b16_ep50", "vit_b16_ep10_ctxv1", "l1"),
        ("CasPL_CoCoOp", "vit_b16_c8_ep10_batch1", "vit_b16_c4_ep10_batch1_ctxv1", "l3"),
    ],
)
def test_scripts_default_to_the_authors_configs_per_method(tmp_path, trainer, b2n, xd, xd_boost):
    res, runs = dry_run("base2new.sh", tmp_path, TRAINER=trainer, DATASETS="imagenet", SEEDS="1")
    assert res.returncode == 0, res.stderr
    assert opt(runs[1][2], "--config-file") == f"configs/trainers/{trainer}/{b2n}.yaml"
    assert opt(runs[1][2], "OPTIM.MAX_EPOCH") is None  # no CoOp epoch rule for the authors' CasPL_CoOp
    res, runs = dry_run("dg.sh", tmp_path, TRAINER=trainer, SEEDS="1")
    assert res.returncode == 0, res.stderr
    assert runs[0][1].endswith(f"boost/imagenet/vit_b16_l14_ep20_batch128_4+4ctx_{xd_boost}/seed1")
    assert opt(runs[1][2], "--config-file") == f"configs/trainers/{trainer}/{xd}.yaml"


def test_fewshot_gpa_per_dataset_as_the_authors_launch(tmp_path):
    sets = "imagenet caltech101 oxford_pets food101 ucf101 sun397 stanford_cars oxford_flowers fgvc_aircraft dtd eurosat"
    for trainer in ("CasPL_PromptSRC", "PromptSRC"):
        res, runs = dry_run("fewshot.sh", tmp_path, TRAINER=trainer, DATASETS=sets, SEEDS="1", SHOTS="1")
        assert res.returncode == 0, res.stderr
        gpa = {
            r[0].split()[1]: (opt(r[2], "TRAINER.PROMPTSRC.GPA_MEAN"), opt(r[2], "TRAINER.PROMPTSRC.GPA_STD"))
            for r in runs
            if "-shot" in r[0]
        }
        five = {"stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat"}
        assert gpa == {d: ("45", "5") if d in five else (None, None) for d in sets.split()}  # else the YAML's
    assert (
        merged("CasPL_PromptSRC/vit_b16_c2_ep50_batch4_8+8ctx_few_shot_l12").TRAINER.PROMPTSRC.GPA_MEAN
    ) == 30


# ---------------------------------------------------------------------------- item 3: results.json
BOOST_TINY = [
    "TRAINER.CASPL.PREC", "fp32", "TRAINER.CASPL.TEACHER.NAME", "small-vit",
    "TRAINER.CASPL.BOOST.N_CTX_TEXT", "2", "TRAINER.CASPL.BOOST.N_CTX_VISION", "2",
    "TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT", "2", "TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION", "2",
    "TRAINER.CASPL.BOOST.CTX_INIT", "a photo", "OPTIM.MAX_EPOCH", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_boost(tmp_path_factory, data_root):
    """One 1-epoch phase-1 run (tiny-vit student, small-vit teacher) shared by this module."""
    import train
    from tests.conftest import train_argv

    out = tmp_path_factory.mktemp("fidelity_boost") / "boost/synthetic/tiny/seed1"
    assert train.main(train_argv(data_root, out, "CasPL_Boost", *BOOST_TINY)) == 0
    return out


def test_results_json_names_the_boost_run_it_used(tiny_boost, run_train, tmp_path):
    from tests.test_methods_train import COMMON, METHODS

    opts = [*COMMON, *METHODS["CoOp"], "OPTIM.MAX_EPOCH", "1", "TRAINER.CASPL.BOOST_PROMPTS", str(tiny_boost)]
    res = run_train(tmp_path / "coop", "CasPL_CoOp", *opts)
    assert res["boost_prompts"] == str(tiny_boost / "boost_prompts.pt")
    run = res["boost_run"]
    assert run["dir"] == str(tiny_boost) and run["seed"] == 1 and run["dataset"] == "Synthetic"
    assert (run["tokens"], run["depth"]) == ([2, 2], [2, 2])
    assert json.loads((tmp_path / "coop/results.json").read_text())["boost_run"] == run


# ---------------------------------------------------------------------------- item 6: CasPL_MaPLe layout
def _words(encoder, c: int = 0) -> list[str]:
    """The token sequence of class c as words, slots shown as "#"."""
    from caspl.vlm.prompted import tokenizer

    ids = encoder.token_ids[c, : int(encoder.eot_index[c]) + 1].tolist()
    slots = set(encoder.slots[c].tolist())
    words = [tokenizer().decoder[i].replace("</w>", "") if p not in slots else "#" for p, i in enumerate(ids)]
    return words[1:-1]  # without SOS / EOT


def _cascade(clip_model, n_text: int, depth: int):
    from caspl.vlm.model import CascadeGroups
    from caspl.vlm.prompted import PromptGroup
    from trainers.ivlp import text_width, vision_width

    torch.manual_seed(3)
    return CascadeGroups(
        PromptGroup(n_text, text_width(clip_model), depth), PromptGroup(2, vision_width(clip_model), depth)
    )


@pytest.mark.parametrize(
    "n_ctx, ctx_init, expected",
    [
        (2, "a photo of a", ["#", "#", "of", "a", "#", "#", "#", "zig", "zag", "."]),  # the authors' layout
        (2, "", ["#", "#", "x", "x", "#", "#", "#", "zig", "zag", "."]),  # theirs: the placeholders "X X"
        (4, "a photo of a", ["#"] * 7 + ["zig", "zag", "."]),  # nothing left over
        (8, "a photo of a", ["#"] * 11 + ["zig", "zag", "."]),  # > 4 tokens: random init, nothing left over
    ],
)
def test_caspl_maple_keeps_leftover_words_between_its_tokens_and_the_boosting_tokens(
    tiny_clip, n_ctx, ctx_init, expected
):
    from trainers.maple import MaPLeModel

    model = MaPLeModel(tiny_clip, ["zig_zag"], n_ctx, ctx_init, depth=2, cascade=_cascade(tiny_clip, 3, 2))
    assert _words(model.text_encoder) == expected
    assert model.text_encoder.group_sizes == [n_ctx, 3]
    plain = MaPLeModel(tiny_clip, ["zig_zag"], n_ctx, ctx_init, depth=2)  # MaPLe alone: unchanged
    assert _words(plain.text_encoder)[n_ctx:] == (["of", "a"] if n_ctx == 2 and ctx_init else []) + [
        "zig", "zag", ".",
    ]  # fmt: skip


def test_caspl_maple_token_order_at_every_layer(tiny_clip):
    """Layer 0: [SOS][MaPLe 0]"of a"[boost 0][class]; deeper: both groups rewritten, "of a" carried over."""
    from trainers.maple import MaPLeModel

    model = MaPLeModel(tiny_clip, ["dog"], 2, "a photo of a", depth=3, cascade=_cascade(tiny_clip, 3, 3))
    with torch.no_grad():
        for p in model.prompt_learner.parameters():
            p.add_(torch.randn_like(p))
    seen, outputs = [], []
    blocks = tiny_clip.transformer.resblocks
    hooks = [
        b.register_forward_pre_hook(lambda m, a: seen.append(a[0].permute(1, 0, 2)[0].clone()))
        for b in blocks
    ]
    hooks += [
        b.register_forward_hook(lambda m, a, out: outputs.append(out.permute(1, 0, 2)[0].clone()))
        for b in blocks
    ]
    try:
        with torch.no_grad():
            model.encode_text()
    finally:
        for h in hooks:
            h.remove()
    maple, boost = model.prompt_learner.text(), model.cascade.text()
    pos = tiny_clip.positional_embedding
    embed = model.text_encoder.token_embedding[0]
    torch.testing.assert_close(seen[0][1:3], maple[0] + pos[1:3])
    torch.testing.assert_close(seen[0][3:5], embed[3:5] + pos[3:5])  # "of a"
    torch.testing.assert_close(seen[0][5:8], boost[0] + pos[5:8])
    for layer in (1, 2):
        torch.testing.assert_close(seen[layer][1:3], maple[layer])
        torch.testing.assert_close(seen[layer][5:8], boost[layer])
        torch.testing.assert_close(seen[layer][3:5], outputs[layer - 1][3:5])  # "of a" passes through
    torch.testing.assert_close(seen[3], outputs[2])  # beyond both depths nothing is rewritten


# ---------------------------------------------------------------------------- item 7(b): depth mismatch
def _build(data_root, out, trainer, *opts):
    from tests.test_methods_train import build

    return build(data_root, out, trainer, *opts)


def test_depth_mismatch_is_refused_for_ivlp_style_methods_unless_kept(
    tiny_boost, data_root, tmp_path, capsys
):
    from tests.test_methods_train import COMMON, METHODS

    boost = ["TRAINER.CASPL.BOOST_PROMPTS", str(tiny_boost)]  # depth 2 in both towers
    deeper = ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "3", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "3"]
    opts = [*COMMON, *METHODS["PromptSRC"], *boost]
    same = _build(data_root, tmp_path / "same", "CasPL_PromptSRC", *opts)  # equal depths: no question
    assert len(same.model.cascade.text.tokens) == 2
    with pytest.raises(
        ValueError, match=r"depth 2 \(text\) / 2 \(vision\) but TRAINER.PROMPTSRC.PROMPT_DEPTH"
    ):
        _build(data_root, tmp_path / "err", "CasPL_PromptSRC", *opts, *deeper)
    kept = _build(
        data_root,
        tmp_path / "keep",
        "CasPL_PromptSRC",
        *opts,
        *deeper,
        "TRAINER.CASPL.DEPTH_MISMATCH",
        "keep",
    )
    assert "act at their trained depth" in capsys.readouterr().out
    # Kept: the trained layers only (never random padding), beside the method's 3 prompted layers.
    saved = torch.load(tiny_boost / "boost_prompts.pt", weights_only=True)
    assert len(kept.model.cascade.text.tokens) == 2 and len(kept.model.prompt_learner.text.tokens) == 3
    assert all(torch.equal(a, b) for a, b in zip(kept.model.cascade.text(), saved["text"]))
    # MaPLe (and the shallow CoOp / CoCoOp) run the boosting prompts at their own depth, as the authors' code.
    maple = [*COMMON, *METHODS["MaPLe"], "TRAINER.MAPLE.PROMPT_DEPTH", "3", *boost]
    assert len(_build(data_root, tmp_path / "maple", "CasPL_MaPLe", *maple).model.cascade.text.tokens) == 2
    with pytest.raises(ValueError, match="DEPTH_MISMATCH must be error or keep"):
        _build(data_root, tmp_path / "bad", "CasPL_PromptSRC", *opts, "TRAINER.CASPL.DEPTH_MISMATCH", "pad")


@pytest.mark.parametrize("trainer", ["CasPL_PromptSRC", "CasPL_IVLP"])
def test_shipped_config_pairs_never_hit_the_depth_mismatch(tmp_path, trainer):
    for script, env in (
        ("base2new.sh", {"DATASETS": "dtd imagenet"}),
        ("fewshot.sh", {"DATASETS": "dtd", "SHOTS": "1"}),
        ("xd.sh", {"DATASETS": "dtd"}),
    ):
        res, runs = dry_run(script, tmp_path, TRAINER=trainer, SEEDS="1", **env)
        assert res.returncode == 0, res.stderr
        boosts = {
            r[1] + "/boost_prompts.pt": merged_file(opt(r[2], "--config-file"))
            for r in runs
            if "boost" in r[0]
        }
        node = trainer.removeprefix("CasPL_").upper()
        for what, _, argv in runs:
            if "boost" in what or "--eval-only" in argv:
                continue
            boost = boosts[opt(argv, "TRAINER.CASPL.BOOST_PROMPTS")].TRAINER.CASPL.BOOST
            method = merged_file(opt(argv, "--config-file")).TRAINER[node]
            assert (boost.PROMPT_DEPTH_TEXT, boost.PROMPT_DEPTH_VISION) == (
                method.PROMPT_DEPTH_TEXT, method.PROMPT_DEPTH_VISION,
            ), (script, what)  # fmt: skip


def merged_file(rel_path: str):
    return merged(rel_path.removeprefix("configs/trainers/").removesuffix(".yaml"))


# ---------------------------------------------------------------------------- ablations: the unlabeled pool
def _pool_cfg(data_root, **boost):
    import trainers  # noqa: F401
    from caspl.config import get_cfg_default

    cfg = get_cfg_default()
    cfg.DATASET.NAME, cfg.DATASET.ROOT, cfg.SEED = "Synthetic", str(data_root), 1
    for key, value in boost.items():
        if key == "UNLABELED_DIR":
            cfg.DATASET.UNLABELED_DIR = value
        else:
            cfg.TRAINER.CASPL.BOOST[key] = value
    return cfg


@pytest.fixture(scope="module")
def synthetic(data_root):
    from caspl.data.loader import build_dataset

    return build_dataset(_pool_cfg(data_root))


@pytest.fixture(scope="module")
def other_dataset():
    """A second registered dataset (Synthetic's images in a folder of its own) for out-of-domain pools."""
    from caspl.registry import DATASET_REGISTRY
    from datasets.synthetic import Synthetic

    if "SyntheticOther" not in DATASET_REGISTRY:
        DATASET_REGISTRY.register(type("SyntheticOther", (Synthetic,), {"dataset_name": "synthetic_other"}))
    return "SyntheticOther"


def test_unlabeled_per_class_draws_n_train_images_per_class_seeded(data_root, synthetic):
    from collections import Counter

    from trainers.caspl import unlabeled_pool

    train = {d.impath: d.label for d in synthetic.train_x}
    paths, record = unlabeled_pool(_pool_cfg(data_root, UNLABELED_PER_CLASS=3), synthetic)
    assert len(paths) == 36 and set(Counter(train[p] for p in paths).values()) == {3}  # 3 of each of 12
    assert record["per_class"] == 3 and record["n_images"] == 36 and record["seed"] == 1
    assert record["images"] == sorted(os.path.relpath(p, data_root) for p in paths)
    again, _ = unlabeled_pool(_pool_cfg(data_root, UNLABELED_PER_CLASS=3), synthetic)
    assert again == paths  # the seed fixes the draw
    cfg = _pool_cfg(data_root, UNLABELED_PER_CLASS=3)
    cfg.SEED = 2
    assert unlabeled_pool(cfg, synthetic)[0] != paths
    everything, record = unlabeled_pool(_pool_cfg(data_root), synthetic)  # 0: the whole train split
    assert sorted(everything) == sorted(train) and "images" not in record
    capped, _ = unlabeled_pool(_pool_cfg(data_root, UNLABELED_PER_CLASS=100), synthetic)
    assert sorted(capped) == sorted(train)  # a class with fewer images gives all it has
    with pytest.raises(ValueError, match="UNLABELED_PER_CLASS must be >= 0"):
        unlabeled_pool(_pool_cfg(data_root, UNLABELED_PER_CLASS=-1), synthetic)


def test_out_of_domain_pool_from_a_folder_or_another_dataset(data_root, synthetic, other_dataset, tmp_path):
    import shutil

    from trainers.caspl import unlabeled_pool

    folder = tmp_path / "web_images"
    folder.mkdir()
    for i, item in enumerate(synthetic.test[:5]):
        shutil.copy(item.impath, folder / f"img_{i}.png")
    paths, record = unlabeled_pool(
        _pool_cfg(data_root, UNLABELED="dir", UNLABELED_DIR=str(folder)), synthetic
    )
    assert sorted(paths) == sorted(str(p) for p in folder.iterdir()) and record["source"] == "dir"
    with pytest.raises(ValueError, match="needs DATASET.UNLABELED_DIR"):
        unlabeled_pool(_pool_cfg(data_root, UNLABELED="dir"), synthetic)
    with pytest.raises(ValueError, match="needs a labelled train split"):
        unlabeled_pool(
            _pool_cfg(data_root, UNLABELED="dir", UNLABELED_DIR=str(folder), UNLABELED_PER_CLASS=2), synthetic
        )
    paths, _ = unlabeled_pool(_pool_cfg(data_root, UNLABELED=other_dataset, UNLABELED_PER_CLASS=2), synthetic)
    assert len(paths) == 24 and all(f"{os.sep}synthetic_other{os.sep}" in p for p in paths)
    by_config_name, _ = unlabeled_pool(
        _pool_cfg(data_root, UNLABELED="synthetic"), synthetic
    )  # the yaml's name
    assert sorted(by_config_name) == sorted(d.impath for d in synthetic.train_x)
    with pytest.raises(ValueError, match="'nowhere' is neither train, dir, a registered dataset"):
        unlabeled_pool(_pool_cfg(data_root, UNLABELED="nowhere"), synthetic)


def test_boost_file_records_the_pool_and_keeps_the_target_class_names(data_root, other_dataset, tmp_path):
    import train
    from tests.conftest import train_argv
    from trainers.caspl import CasPL_Boost

    opts = [
        *BOOST_TINY,
        "TRAINER.CASPL.BOOST.UNLABELED",
        other_dataset,
        "TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS",
        "2",
    ]
    seen = {}
    original = CasPL_Boost.build_prompt_model

    def spy(self, clip_model, classnames, cascade):
        seen["teacher_classes"] = list(self.boost_classnames)
        return original(self, clip_model, classnames, cascade)

    CasPL_Boost.build_prompt_model = spy
    try:
        assert train.main(train_argv(data_root, tmp_path, "CasPL_Boost", *opts)) == 0
    finally:
        CasPL_Boost.build_prompt_model = original
    from datasets.synthetic import CLASSNAMES

    assert seen["teacher_classes"] == list(
        CLASSNAMES
    )  # the target's names; only the images come from elsewhere
    meta = torch.load(tmp_path / "boost_prompts.pt", weights_only=True)["meta"]
    pool = meta["unlabeled"]
    assert (pool["source"], pool["per_class"], pool["seed"], pool["n_images"]) == (other_dataset, 2, 1, 24)
    assert len(pool["images"]) == 24 and all(p.startswith("synthetic_other/") for p in pool["images"])
    assert meta["teacher"]["class_text"] == ["a photo of a {}."]


def test_ablations_script_plans_the_partial_data_and_out_of_domain_sweeps(tmp_path):
    res, runs = dry_run("ablations.sh", tmp_path, PER_CLASS="2 full", SEEDS="1 2 3")
    assert res.returncode == 0, res.stderr
    boosts = [r for r in runs if r[0].startswith("boost")]
    assert [opt(r[2], "TRAINER.CASPL.BOOST.UNLABELED_PER_CLASS") for r in boosts] == ["2", "0"]
    assert [opt(r[2], "--seed") for r in boosts] == ["1", "1"]  # one boosting run per N, read by the 3 seeds
    for n, boost in zip(("2", "full"), boosts):
        tree = str(tmp_path / f"out/ablations/partial_data/per_class_{n}")
        assert boost[1].startswith(tree + "/boost/dtd/")
        phase2 = [r for r in runs if r[1].startswith(tree + "/base2new/")]
        assert len(phase2) == 6 and {r[0].split()[0] for r in phase2} == {"train", "test"}
        assert all(opt(r[2], "TRAINER.CASPL.BOOST_PROMPTS") == boost[1] + "/boost_prompts.pt" for r in phase2)
    res, runs = dry_run("ablations.sh", tmp_path, ABLATION="out_of_domain", SEEDS="1")
    assert res.returncode == 0, res.stderr
    boosts = [r for r in runs if r[0].startswith("boost")]
    assert len(boosts) == 10 and "imagenet" not in {r[0].split()[1] for r in boosts}
    assert {opt(r[2], "TRAINER.CASPL.BOOST.UNLABELED") for r in boosts} == {"imagenet"}
    assert all(
        "/ablations/out_of_domain/fewshot/" in r[1] and "/shots_16/" in r[1] for r in runs if "shot" in r[0]
    )
    bad, _ = dry_run("ablations.sh", tmp_path, ABLATION="depth")
    assert bad.returncode == 2 and "ABLATION must be partial_data or out_of_domain" in bad.stderr
    bad, _ = dry_run("ablations.sh", tmp_path, PER_CLASS="0")
    assert bad.returncode == 2 and "PER_CLASS takes positive image counts" in bad.stderr
