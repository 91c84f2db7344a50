"""scripts/teachers.sh (phase 1 + CasPL_PromptSRC per teacher) and its table (tools/tables.py --teachers)."""

import json
from pathlib import Path

import pytest

from tests.test_scripts import B2N_CFG, BOOST_CFG, planned, repo, sweep  # noqa: F401 (repo: a fixture)
from tools import tables

TEACHERS = "ViT-L/14 open_clip:ViT-H-14:laion2b_s32b_b79k"
SLUGS = {
    "ViT-L/14": "ViT-L-14",
    "open_clip:ViT-H-14:laion2b_s32b_b79k": "open_clip-ViT-H-14-laion2b_s32b_b79k",
}


def _opt(argv: list[str], key: str) -> str:
    return argv[argv.index(key) + 1]


def test_teacher_sweep_plans_phase1_and_phase2_per_teacher(repo):  # noqa: F811
    res = sweep(repo, "teachers.sh", DRY_RUN="1", TEACHERS=TEACHERS, DATASETS="dtd", SEEDS="1 2")
    assert res.returncode == 0, res.stderr
    runs = planned(res.stdout)
    out = repo.parent / "out"
    # per teacher: one phase-1 run (seed 1, read by every seed: BOOST_SEEDS) + (train base, test new) x seeds
    assert len(runs) == 2 * (1 + 2 * 2)
    for teacher, slug in SLUGS.items():
        mine = [r for r in runs if r[1].startswith(f"{out}/teachers/{slug}/")]
        boosts = [r for r in mine if _opt(r[2], "--trainer") == "CasPL_Boost"]
        assert len(mine) == 5 and len(boosts) == 1
        (what, directory, argv) = boosts[0]
        assert _opt(argv, "TRAINER.CASPL.TEACHER.NAME") == teacher
        assert directory == f"{out}/teachers/{slug}/boost/dtd/{BOOST_CFG}/seed1"
        assert what == f"boost dtd seed1 teacher {teacher}"
        for _, directory, argv in mine:
            if argv == boosts[0][2]:
                continue
            # phase 2 of every seed reads this teacher's boosting prompts
            assert _opt(argv, "TRAINER.CASPL.BOOST_PROMPTS") == (
                f"{out}/teachers/{slug}/boost/dtd/{BOOST_CFG}/seed1/boost_prompts.pt"
            )
            seed = directory.rsplit("seed", 1)[1]
            assert _opt(argv, "--trainer") == "CasPL_PromptSRC"
            assert f"/shots_16/CasPL_PromptSRC/{B2N_CFG}/seed{seed}" in directory
    bad = sweep(repo, "teachers.sh", DRY_RUN="1", TRAINER="PromptSRC", DATASETS="dtd", SEEDS="1")
    assert bad.returncode != 0 and "CasPL_" in bad.stderr


def test_teacher_table_after_a_sweep(repo, capsys):  # noqa: F811
    res = sweep(repo, "teachers.sh", TEACHERS=TEACHERS, DATASETS="dtd eurosat", SEEDS="1")
    assert res.returncode == 0, res.stdout + res.stderr
    out = repo.parent / "out"
    # What the real runs write: accuracies per teacher, and phase 1 records its teacher and held-out KL.
    accuracy = {("ViT-L-14", "base"): 80.0, ("ViT-L-14", "new"): 70.0}
    accuracy |= {
        (SLUGS["open_clip:ViT-H-14:laion2b_s32b_b79k"], r): a for r, a in (("base", 84.0), ("new", 76.0))
    }
    for path in (out / "teachers").rglob("results.json"):
        slug, role = path.relative_to(out / "teachers").parts[:2]
        record = {"metrics": {"accuracy": 0.0}}
        if role == "boost":
            name = next(t for t, s in SLUGS.items() if s == slug)
            record |= {"dataset": path.parts[-4], "teacher": {"name": name, "library": "x"}}
            record |= {"kd_heldout_before": 2.0, "kd_heldout_after": 0.5 if slug == "ViT-L-14" else 0.25}
        else:
            ds_bonus = 2.0 if "/eurosat/" in str(path) else 0.0
            record["metrics"]["accuracy"] = accuracy[(slug, role.split("_")[1])] + ds_bonus
        path.write_text(json.dumps(record))
    assert tables.collect(out) == []  # the ablation stays out of the main base-to-new table
    phase1, ablation = tables.teacher_tables(out)
    assert ["ViT-L/14", "dtd", 2.0, 0.5, 1] in phase1.rows
    assert ["open_clip:ViT-H-14:laion2b_s32b_b79k", "eurosat", 2.0, 0.25, 1] in phase1.rows
    # Base / New averaged over dtd and eurosat (+0 / +2), HM of the averages
    method = f"PromptSRC+CasPL [{B2N_CFG}]"
    assert ablation.rows == [
        ["ViT-L/14", method, 81.0, 71.0, pytest.approx(2 * 81 * 71 / (81 + 71))],
        ["open_clip:ViT-H-14:laion2b_s32b_b79k", method, 85.0, 77.0, pytest.approx(2 * 85 * 77 / (85 + 77))],
    ]
    assert tables.main([str(out), "--teachers"]) == 0
    assert "| open_clip:ViT-H-14:laion2b_s32b_b79k | PromptSRC+CasPL" in capsys.readouterr().out


def test_teacher_table_says_when_there_is_nothing(tmp_path: Path, capsys):
    assert tables.main([str(tmp_path), "--teachers"]) == 1
    assert "teachers/" in capsys.readouterr().err
