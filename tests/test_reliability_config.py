"""Reliability of the config path (issue 11): YAML only, named syntax errors, one validation after merging."""

from pathlib import Path

import pytest

from caspl.config import build_arg_parser, setup_cfg


def _args(*argv: str):
    return build_arg_parser().parse_args(list(argv))


# ---------------------------------------------------------------- item 15: no code execution
@pytest.mark.parametrize("flag", ["--config-file", "--dataset-config-file"])
def test_python_config_file_is_refused_and_never_runs(tmp_path, flag):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(
        f"open({str(marker)!r}, 'w').write('pwned')\nfrom yacs.config import CfgNode\ncfg = CfgNode()\n"
    )
    with pytest.raises(ValueError) as e:
        setup_cfg(_args(flag, str(evil)))
    msg = str(e.value)
    assert str(evil) in msg and "only YAML" in msg
    assert not marker.exists()


def test_yml_suffix_is_accepted(tmp_path):
    f = tmp_path / "c.yml"
    f.write_text("OPTIM:\n  LR: 0.25\n")
    assert setup_cfg(_args("--config-file", str(f))).OPTIM.LR == 0.25


# ---------------------------------------------------------------- item 16: malformed YAML
def test_malformed_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n  NAME: [sgd\nTRAIN:\n  PRINT_FREQ: 5\n")
    with pytest.raises(ValueError) as e:
        setup_cfg(_args("--config-file", str(bad)))
    msg = str(e.value)
    assert str(bad) in msg and "<unicode string>" not in msg
    line = int(msg.split(", line ")[1].split(",")[0])
    assert 3 <= line <= 5  # where the unclosed list is noticed


def test_yaml_that_is_not_a_mapping_names_the_file(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml: expected a mapping"):
        setup_cfg(_args("--dataset-config-file", str(bad)))


def test_empty_yaml_changes_nothing(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert setup_cfg(_args("--config-file", str(empty))).OPTIM.LR == setup_cfg(_args()).OPTIM.LR


def test_type_errors_still_name_the_file(tmp_path):
    bad = tmp_path / "typed.yaml"
    bad.write_text("OPTIM:\n  MAX_EPOCH: 'ten'\n")
    with pytest.raises(ValueError, match=str(Path(bad).name)):
        setup_cfg(_args("--config-file", str(bad)))


# ---------------------------------------------------------------- item 6: validation after merging
REPO = Path(__file__).resolve().parents[1]
TRAINER_YAMLS = sorted((REPO / "configs/trainers").glob("*/*.yaml"))
DATASET_YAMLS = sorted((REPO / "configs/datasets").glob("*.yaml"))


def test_every_shipped_config_passes_validation():
    import trainers  # noqa: F401  (their config nodes)

    assert len(TRAINER_YAMLS) > 30 and len(DATASET_YAMLS) >= 16  # the 15 benchmarks + generated ones
    for ds in DATASET_YAMLS:
        setup_cfg(_args("--dataset-config-file", str(ds)))
    for tr in TRAINER_YAMLS:
        cfg = setup_cfg(_args("--config-file", str(tr), "--trainer", tr.parent.name))
        assert cfg.TRAINER.NAME == tr.parent.name


@pytest.mark.parametrize(
    ("opts", "key", "value"),
    [
        (["OPTIM.MAX_EPOCH", "-2"], "OPTIM.MAX_EPOCH", "-2"),
        (["OPTIM.MAX_EPOCH", "0"], "OPTIM.MAX_EPOCH", "0"),
        (["OPTIM.LR", "0.0"], "OPTIM.LR", "0.0"),
        (["OPTIM.LR", "-0.002"], "OPTIM.LR", "-0.002"),
        (["OPTIM.NAME", "sgdd"], "OPTIM.NAME", "'sgdd'"),
        (["OPTIM.LR_SCHEDULER", "cosin"], "OPTIM.LR_SCHEDULER", "'cosin'"),
        (["DATALOADER.TRAIN_X.BATCH_SIZE", "0"], "DATALOADER.TRAIN_X.BATCH_SIZE", "0"),
        (["DATALOADER.TEST.BATCH_SIZE", "-4"], "DATALOADER.TEST.BATCH_SIZE", "-4"),
        (["DATASET.NUM_SHOTS", "-3"], "DATASET.NUM_SHOTS", "-3"),
        (["DATASET.SUBSAMPLE_CLASSES", "novel"], "DATASET.SUBSAMPLE_CLASSES", "'novel'"),
        (["OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "linaer"], "OPTIM.WARMUP_TYPE", "'linaer'"),
        (["OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_MIN_LR", "-1e-5"], "OPTIM.WARMUP_MIN_LR", "-1e-05"),
        (["TRAIN.PRINT_FREQ", "0"], "TRAIN.PRINT_FREQ", "0"),
        (["TEST.FINAL_MODEL", "best"], "TEST.FINAL_MODEL", "'best'"),
    ],
)
def test_impossible_setting_is_refused_naming_key_and_value(opts, key, value):
    from caspl.config import ConfigError

    with pytest.raises(ConfigError) as e:
        setup_cfg(_args(*opts))
    assert f"{key} = {value}:" in str(e.value)


def test_every_problem_is_listed_at_once():
    from caspl.config import ConfigError

    with pytest.raises(ConfigError) as e:
        setup_cfg(_args("OPTIM.MAX_EPOCH", "-2", "OPTIM.LR", "0.0", "DATALOADER.TRAIN_X.BATCH_SIZE", "0"))
    assert all(k in str(e.value) for k in ("OPTIM.MAX_EPOCH", "OPTIM.LR", "DATALOADER.TRAIN_X.BATCH_SIZE"))


def test_training_only_checks_are_skipped_for_eval_only():
    cfg = setup_cfg(_args("--eval-only", "OPTIM.MAX_EPOCH", "0", "OPTIM.LR", "0.0"))
    assert cfg.OPTIM.MAX_EPOCH == 0
    setup_cfg(_args("--no-train", "OPTIM.MAX_EPOCH", "-1"))
    from caspl.config import ConfigError

    with pytest.raises(ConfigError, match="DATALOADER.TEST.BATCH_SIZE"):
        setup_cfg(_args("--eval-only", "DATALOADER.TEST.BATCH_SIZE", "0"))


def test_shots_minus_one_and_zero_mean_every_image():
    assert setup_cfg(_args("DATASET.NUM_SHOTS", "0")).DATASET.NUM_SHOTS == 0
    assert setup_cfg(_args()).DATASET.NUM_SHOTS == -1


def _depths(node: str, n: int) -> list[str]:
    return [f"TRAINER.{node}.PROMPT_DEPTH_TEXT", str(n), f"TRAINER.{node}.PROMPT_DEPTH_VISION", str(n)]


def test_prompt_depths_within_the_backbone_in_any_trainer_node():
    import trainers  # noqa: F401
    from caspl.config import ConfigError, get_cfg_default, validate_cfg

    ok = ["--trainer", "IVLP", "MODEL.BACKBONE.NAME", "ViT-B/16", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "12"]
    setup_cfg(_args(*ok))
    with pytest.raises(
        ConfigError, match=r"TRAINER.IVLP.PROMPT_DEPTH_VISION = 13: the backbone ViT-B/16 has 12"
    ):
        setup_cfg(_args(*ok[:-1], "13"))
    # ViT-L/14: 24 vision layers but 12 text layers; tiny-vit: 4 and 4
    large = ["--trainer", "PromptSRC", "MODEL.BACKBONE.NAME", "ViT-L/14"]
    setup_cfg(_args(*large, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "24"))
    with pytest.raises(ConfigError, match="TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = 13"):
        setup_cfg(_args(*large, "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "13"))
    # another trainer's node keeps its defaults (IVLP's depth 9 on a 4-layer CLIP) without complaint
    setup_cfg(_args("--trainer", "PromptSRC", "MODEL.BACKBONE.NAME", "tiny-vit", *_depths("PROMPTSRC", 4)))
    with pytest.raises(
        ConfigError, match="TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT = 12: the backbone tiny-vit has 4"
    ):
        setup_cfg(
            _args(
                "--trainer",
                "CasPL_Boost",
                "MODEL.BACKBONE.NAME",
                "tiny-vit",
                "TRAINER.CASPL.BOOST.PROMPT_DEPTH_VISION",
                "4",
            )
        )
    # phase 2 reads the boosting depths from boost_prompts.pt: CASPL.BOOST is not judged there
    setup_cfg(
        _args("--trainer", "CasPL_PromptSRC", "MODEL.BACKBONE.NAME", "tiny-vit", *_depths("PROMPTSRC", 4))
    )
    with pytest.raises(ConfigError, match="TRAINER.MAPLE.PROMPT_DEPTH = -1: expected an integer >= 0"):
        setup_cfg(_args("TRAINER.MAPLE.PROMPT_DEPTH", "-1"))
    # a node this module has never heard of (e.g. a new trainer's) is walked generically
    from yacs.config import CfgNode

    cfg = get_cfg_default()
    cfg.MODEL.BACKBONE.NAME = "ViT-B/32"
    cfg.TRAINER.NAME = "NewMethod"
    cfg.TRAINER.NEWMETHOD = CfgNode({"PROMPT_DEPTH_VISION": 20, "N_CTX": 4, "OTHER": -5})
    cfg.TRAINER.NEWMETHOD.STAGE = CfgNode({"PROMPT_DEPTH_TEXT": -2})
    with pytest.raises(ConfigError) as e:
        validate_cfg(cfg)
    assert "TRAINER.NEWMETHOD.PROMPT_DEPTH_VISION = 20: the backbone ViT-B/32 has 12" in str(e.value)
    assert "TRAINER.NEWMETHOD.STAGE.PROMPT_DEPTH_TEXT = -2" in str(e.value)
    cfg.TRAINER.NEWMETHOD.PROMPT_DEPTH_VISION = 12
    cfg.TRAINER.NEWMETHOD.STAGE.PROMPT_DEPTH_TEXT = 2
    validate_cfg(cfg)  # unknown keys (OTHER) are not judged
    # an unknown backbone (or a local checkpoint) leaves depths to the trainer's own check
    cfg.MODEL.BACKBONE.PATH = "my_clip.pt"
    cfg.TRAINER.NEWMETHOD.PROMPT_DEPTH_VISION = 20
    validate_cfg(cfg)


def test_impossible_epochs_fail_train_py_before_any_output(tmp_path, data_root):
    """The probe of the issue: MAX_EPOCH -2 with single_step trained 0 epochs and wrote results.json."""
    import train
    from caspl.config import ConfigError
    from tests.conftest import train_argv

    out = tmp_path / "run"
    argv = train_argv(
        data_root, out, "ZeroshotCLIP", "OPTIM.MAX_EPOCH", "-2", "OPTIM.LR_SCHEDULER", "single_step"
    )
    with pytest.raises(ConfigError, match="OPTIM.MAX_EPOCH = -2"):
        train.main(argv)
    assert not (out / "results.json").exists()


def test_warm_up_as_long_as_training_is_said_not_refused():
    with pytest.warns(UserWarning, match="OPTIM.WARMUP_EPOCH = 10 >= OPTIM.MAX_EPOCH = 10"):
        cfg = setup_cfg(_args("OPTIM.WARMUP_EPOCH", "10", "OPTIM.MAX_EPOCH", "10"))
    assert cfg.OPTIM.MAX_EPOCH == 10
