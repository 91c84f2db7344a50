"""Config: Dassl defaults, merge order, and errors that name the bad key."""

import pytest

from caspl.config import build_arg_parser, get_cfg_default, setup_cfg


def _args(*argv: str):
    return build_arg_parser().parse_args(list(argv))


def test_defaults_have_dassl_keys():
    cfg = get_cfg_default()
    assert cfg.OPTIM.WARMUP_TYPE == "linear" and cfg.OPTIM.WARMUP_EPOCH == -1
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.TEST.FINAL_MODEL == "last_step"
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all" and cfg.DATASET.NUM_SHOTS == -1
    assert tuple(cfg.INPUT.SIZE) == (224, 224)


def test_merge_order_dataset_then_trainer_then_flags_then_opts(tmp_path):
    ds = tmp_path / "ds.yaml"
    ds.write_text("DATASET:\n  NAME: Synthetic\nOPTIM:\n  LR: 0.1\n  MAX_EPOCH: 7\nSEED: 5\n")
    tr = tmp_path / "tr.yaml"
    tr.write_text("OPTIM:\n  LR: 0.2\n  WARMUP_CONS_LR: 1e-5\nSEED: 6\n")
    cfg = setup_cfg(
        _args("--dataset-config-file", str(ds), "--config-file", str(tr), "--seed", "9", "OPTIM.LR", "0.3")
    )
    assert cfg.DATASET.NAME == "Synthetic"  # only the dataset file sets it
    assert cfg.OPTIM.MAX_EPOCH == 7  # dataset file, not overridden
    assert cfg.OPTIM.LR == 0.3  # opts beat both files
    assert cfg.SEED == 9  # the flag beats the files
    assert cfg.OPTIM.WARMUP_CONS_LR == pytest.approx(1e-5)  # "1e-5" is a float, as in published YAMLs
    cfg2 = setup_cfg(_args("--dataset-config-file", str(ds), "--config-file", str(tr)))
    assert cfg2.OPTIM.LR == 0.2 and cfg2.SEED == 6  # trainer file beats dataset file


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(KeyError) as e:
        setup_cfg(_args("--config-file", str(bad)))
    assert "OPTIM.LEARNING_RATE" in str(e.value) and str(bad) in str(e.value)


def test_unknown_key_in_opts_names_key():
    with pytest.raises(KeyError, match="TRAIN.NOPE"):
        setup_cfg(_args("TRAIN.NOPE", "1"))


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        setup_cfg(_args("--config-file", str(tmp_path / "missing.yaml")))


def test_cfg_is_frozen():
    cfg = setup_cfg(_args())
    with pytest.raises(AttributeError):
        cfg.SEED = 3
