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
