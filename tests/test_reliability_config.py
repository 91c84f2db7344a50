"""Reliability of the config path (issue 11): YAML only, named syntax errors, one validation after merging."""

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
