"""First-run friction and CoOp habits: eval-only without a model dir, one message for a tiny backbone,
answers before torch is imported, "did you mean", shipped backbone names, the Makefile's targets."""

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

PY = sys.executable


def _child(code: str) -> subprocess.CompletedProcess:
    """Python code in a fresh interpreter at the repository root (a clean sys.modules and warning state)."""
    return subprocess.run(
        [PY, "-c", code], cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )


# ---------------------------------------------------------------------------- CoOp habits
def test_zero_shot_eval_only_without_model_dir_equals_a_run(run_train, tmp_path):
    """CoOp's scripts/zsclip/zeroshot.sh: `--eval-only` and no `--model-dir`."""
    plain = run_train(tmp_path / "run", "ZeroshotCLIP")
    evaluated = run_train(tmp_path / "eval", "ZeroshotCLIP", extra_argv=("--eval-only",))
    assert evaluated["eval_only"] is True and evaluated["model_dir"] == ""
    assert evaluated["metrics"] == plain["metrics"]
    assert "has no trained weights" in (tmp_path / "eval" / "log.txt").read_text()


@pytest.mark.parametrize("trainer", ["CoOp", "LinearProbeCLIP"])
def test_trained_method_eval_only_without_model_dir_says_nothing_is_trained(run_train, tmp_path, trainer):
    with pytest.raises(ValueError, match=rf"{trainer} learns .*nothing trained to evaluate.*--model-dir"):
        run_train(tmp_path / "x", trainer, extra_argv=("--eval-only",))
    assert not (tmp_path / "x" / "results.json").exists()


@pytest.mark.parametrize(
    ("trainer", "config"),
    [
        ("PromptSRC", "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml"),
        ("MaPLe", "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"),
        # the published phase-1 config, whatever its name (the ViT-B/16 student, L/14 teacher one)
        ("CasPL_Boost", str(sorted((REPO / "configs/trainers/CasPL_Boost").glob("vit_b16_l14_*.yaml"))[0])),
    ],
)
def test_tiny_backbone_needs_one_correction(run_train, tmp_path, data_root, trainer, config):
    """A published config on tiny-vit: one error lists every option; appending them builds the trainer."""
    import train
    from tests.conftest import train_argv

    argv = train_argv(data_root, tmp_path / "a", trainer, config_file=str(REPO / config))
    argv = [a for a in argv if a not in ("INPUT.SIZE", "(32, 32)")]  # the size as a new user leaves it
    teacher = ["TRAINER.CASPL.TEACHER.NAME", "small-vit"] if trainer == "CasPL_Boost" else []
    with pytest.raises(ValueError, match="Append, in one go") as err:
        train.main([*argv, *teacher])
    fix = shlex.split(str(err.value).rsplit("\n", 1)[1])
    keys = fix[::2]
    assert "INPUT.SIZE" in keys and fix[keys.index("INPUT.SIZE") * 2 + 1] == "(32, 32)"
    assert sum("DEPTH" in k for k in keys) >= (1 if trainer == "MaPLe" else 2)
    out = tmp_path / "b"
    argv = train_argv(data_root, out, trainer, config_file=str(REPO / config))
    assert train.main(["--no-train", *argv, *teacher, *fix]) == 0  # the model builds: no second error


# ---------------------------------------------------------------------------- answers before torch
def test_unknown_names_are_answered_before_torch_with_did_you_mean():
    code = """
import sys, train
for argv in (["--trainer", "ZeroShotCLIP"],
             ["--trainer", "CoOp", "--dataset-config-file", "configs/datasets/oxford_pet.yaml"],
             ["--trainer", "CoOp", "--dataset-config-file", "configs/datasets/dtd.yaml",
              "DATASET.NAME", "DescribableTexture"]):
    try:
        train.main(argv)
    except SystemExit as e:
        print("exit", e.code, file=sys.stderr)
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""
    err = _child(code).stderr
    assert err.count("exit 2") == 3, err
    assert "unknown trainer 'ZeroShotCLIP'. Did you mean ZeroshotCLIP?" in err
    assert "Did you mean configs/datasets/oxford_pets.yaml" in err
    assert "unknown dataset 'DescribableTexture' (DATASET.NAME). Did you mean DescribableTextures?" in err
    assert "torch imported: False" in err


def test_help_does_not_import_torch():
    res = _child("import sys, train\ntry:\n    train.main(['--help'])\nexcept SystemExit:\n    pass\n"
                 "print('torch imported:', 'torch' in sys.modules)")  # fmt: skip
    assert "--eval-only" in res.stdout and "torch imported: False" in res.stdout


def test_declared_names_match_the_registries():
    """train.py checks names against the source's declarations: they must be exactly what registers."""
    import datasets  # noqa: F401
    import trainers  # noqa: F401
    from caspl.registry import DATASET_REGISTRY, TRAINER_REGISTRY, declared_names

    def shipped(registry, package: str) -> set[str]:
        # Tests register their own classes (and cascade them: `cascaded` builds the class inside
        # trainers.caspl), so a name is shipped only when no class of its MRO comes from the tests.
        return {
            n
            for n in registry.registered_names()
            if registry.get(n).__module__.startswith(package)
            and not any(c.__module__.split(".")[-1].startswith("test") for c in registry.get(n).__mro__)
        }

    assert declared_names(REPO / "trainers", "TRAINER_REGISTRY") == shipped(TRAINER_REGISTRY, "trainers")
    assert declared_names(REPO / "datasets", "DATASET_REGISTRY") == shipped(DATASET_REGISTRY, "datasets")


def test_registry_error_suggests_the_close_name():
    from caspl.registry import TRAINER_REGISTRY

    with pytest.raises(KeyError, match="Did you mean CoOp"):
        TRAINER_REGISTRY.get("coop")


@pytest.mark.slow  # a fresh interpreter imports torch and every trainer: 10-40 s on 2 busy cores
def test_importing_the_trainers_prints_no_pkg_resources_warning():
    res = _child("import warnings; warnings.simplefilter('default'); import trainers; print('ok')")
    assert res.stdout.strip() == "ok", res.stderr
    assert "pkg_resources is deprecated" not in res.stderr


# ---------------------------------------------------------------------------- shipped configs
def _backbone_names() -> dict[str, str]:
    names = {}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        node = yaml.safe_load(path.read_text()) or {}
        name = ((node.get("MODEL") or {}).get("BACKBONE") or {}).get("NAME")
        teacher = ((node.get("TRAINER") or {}).get("CASPL") or {}).get("TEACHER", {}).get("NAME")
        for value in (name, teacher):
            if value:
                names[f"{path.relative_to(REPO)}:{value}"] = value
    return names


def test_every_shipped_backbone_name_is_known_to_the_resolver():
    from caspl.vlm.weights import CLIP_SOURCES, CLIPWeightsNotFound, check_backbone_name

    names = _backbone_names()
    assert any(v == "RN101" for v in names.values())  # configs/trainers/CoOp/rn101.yaml
    for where, name in names.items():
        try:
            check_backbone_name(name)
        except CLIPWeightsNotFound as err:
            pytest.fail(f"{where}: {err}")
    with pytest.raises(CLIPWeightsNotFound, match="unknown CLIP backbone 'RN152'"):
        check_backbone_name("RN152")
    rn101 = CLIP_SOURCES["RN101"]
    assert rn101.file_name == "RN101.pt" and re.fullmatch(r"[0-9a-f]{64}", rn101.sha256)


def test_rn101_architecture_matches_what_the_resolver_expects():
    """A state dict of RN101's shape (random, built locally) is described as CLIP_SOURCES says."""
    from clip.model import CLIP

    from caspl.vlm.weights import CLIP_SOURCES, _describe_arch

    model = CLIP(512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 64, 1, 1)  # RN101's vision tower, tiny text
    assert _describe_arch(model.state_dict()) == CLIP_SOURCES["RN101"].arch


# ---------------------------------------------------------------------------- Makefile
def test_make_offers_test_fast_and_a_cpu_only_install():
    fast = subprocess.run(["make", "-n", "test-fast"], cwd=REPO, capture_output=True, text=True)
    assert fast.returncode == 0, fast.stderr
    assert re.search(r"pytest .*-m ['\"]not slow['\"]", fast.stdout)
    full = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True).stdout
    assert "pytest" in full and "not slow" not in full
    cpu = subprocess.run(["make", "-n", "install-cpu"], cwd=REPO, capture_output=True, text=True)
    assert cpu.returncode == 0 and "download.pytorch.org/whl/cpu" in cpu.stdout
    assert any(m.startswith("slow:") for m in _pytest_markers())


def _pytest_markers() -> list[str]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
