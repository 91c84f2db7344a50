"""Classification evaluator: numbers on a hand-made batch and Dassl's printed lines."""

import json
import re
from pathlib import Path

import pytest
import torch

from caspl.config import get_cfg_default
from caspl.evaluation import Classification, build_evaluator

# the patterns the CoOp family's parse_test_res.py uses on log.txt
REGEX_ACC = re.compile(r"\* accuracy: ([\.\deE+-]+)%")
REGEX_ERR = re.compile(r"\* error: ([\.\deE+-]+)%")

LAB2CNAME = {0: "cat", 1: "dog", 2: "fish"}
REPO = Path(__file__).resolve().parents[1]


def _cfg(per_class: bool = False, tmp_path=None):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = per_class
    if tmp_path is not None:
        cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def _logits(preds: list[int], num_classes: int = 3) -> torch.Tensor:
    """Logits whose argmax is `preds`."""
    out = torch.randn(len(preds), num_classes) * 0.1
    out[torch.arange(len(preds)), torch.tensor(preds)] = 5.0
    return out


# gt:   0 0 0 0 1 1 1 2 2 2
# pred: 0 0 0 1 1 1 0 2 1 1   -> 6/10 correct
GT = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 0, 1, 1, 1, 0, 2, 1, 1]
# by hand: class 0: tp 3, fp 1, fn 1 -> P 3/4, R 3/4, F1 0.75
#          class 1: tp 2, fp 3, fn 1 -> P 2/5, R 2/3, F1 2*(2/5*2/3)/(2/5+2/3) = 0.5
#          class 2: tp 1, fp 0, fn 2 -> P 1,   R 1/3, F1 0.5
MACRO_F1 = 100 * (0.75 + 0.5 + 0.5) / 3
PER_CLASS = [100 * 3 / 4, 100 * 2 / 3, 100 * 1 / 3]


def _run(evaluator, batches=((0, 4), (4, 10))):
    evaluator.reset()
    for a, b in batches:  # split across batches: totals must accumulate
        evaluator.process(_logits(PRED[a:b]), torch.tensor(GT[a:b]))
    return evaluator.evaluate()


def test_metrics_on_hand_made_batches(capsys):
    res = _run(build_evaluator(_cfg(), lab2cname=LAB2CNAME))
    assert list(res) == ["accuracy", "error", "macro_f1"]
    assert res["accuracy"] == pytest.approx(60.0)
    assert res["error"] == pytest.approx(40.0)
    assert res["macro_f1"] == pytest.approx(MACRO_F1)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines == [
        "=> result",
        "* total: 10",
        "* correct: 6",
        "* accuracy: 60.0%",
        "* error: 40.0%",
        f"* macro_f1: {MACRO_F1:.1f}%",
    ]
    assert float(REGEX_ACC.search(out).group(1)) == pytest.approx(60.0)
    assert float(REGEX_ERR.search(out).group(1)) == pytest.approx(40.0)


def test_reset_forgets_previous_batches(capsys):
    ev = Classification(_cfg())
    ev.process(_logits([1, 1, 1]), torch.tensor([0, 0, 0]))
    res = _run(ev)
    assert res["accuracy"] == pytest.approx(60.0)
    assert "* total: 10" in capsys.readouterr().out


def test_per_class_lines_and_mean(capsys):
    res = _run(build_evaluator(_cfg(per_class=True), lab2cname=LAB2CNAME))
    assert res["perclass_accuracy"] == pytest.approx(sum(PER_CLASS) / 3)
    out = capsys.readouterr().out
    per_class = out.split("=> per-class result\n", 1)[1].splitlines()
    assert per_class == [
        "* class: 0 (cat)\ttotal: 4\tcorrect: 3\tacc: 75.0%",
        "* class: 1 (dog)\ttotal: 3\tcorrect: 2\tacc: 66.7%",
        "* class: 2 (fish)\ttotal: 3\tcorrect: 1\tacc: 33.3%",
        f"* average: {sum(PER_CLASS) / 3:.1f}%",
    ]


def test_macro_f1_ignores_classes_absent_from_ground_truth(capsys):
    # class 3 is predicted but never the truth: Dassl averages F1 over the labels present in gt only
    ev = Classification(_cfg())
    ev.process(_logits([0, 3, 1, 1], num_classes=4), torch.tensor([0, 0, 1, 1]))
    res = ev.evaluate()
    # class 0: P 1, R 1/2 -> F1 2/3; class 1: P 1, R 1 -> F1 1
    assert res["macro_f1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert res["accuracy"] == pytest.approx(75.0)


def test_thousands_separator_in_counts(capsys):
    ev = Classification(_cfg())
    ev.process(_logits([0] * 1234, num_classes=2), torch.zeros(1234, dtype=torch.long))
    ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,234\n" in out and "* correct: 1,234\n" in out


def test_confusion_matrix_is_written_as_json(tmp_path, capsys):
    cfg = _cfg(tmp_path=tmp_path)
    cfg.TEST.COMPUTE_CMAT = True
    _run(Classification(cfg))
    data = json.loads((tmp_path / "cmat.json").read_text())
    assert data["labels"] == [0, 1, 2]
    assert data["matrix"][0] == pytest.approx([0.75, 0.25, 0.0])
    assert data["matrix"][2] == pytest.approx([0.0, 2 / 3, 1 / 3])


def test_bad_input_is_named():
    ev = Classification(_cfg())
    with pytest.raises(ValueError, match=r"\[B, C\].*\(4,\)"):
        ev.process(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="no samples"):
        ev.evaluate()
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(_cfg(per_class=True))


def test_unknown_evaluator_lists_registered_ones():
    cfg = _cfg()
    cfg.TEST.EVALUATOR = "Retrieval"
    with pytest.raises(KeyError, match="Retrieval.*Classification"):
        build_evaluator(cfg)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_sklearns_on_random_labels(seed):
    """Our numpy macro-F1 and confusion matrix compute what Dassl's sklearn calls compute (classes missing
    from the truth, never predicted, or only predicted included)."""
    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score

    from caspl.evaluation.evaluator import macro_f1_score, row_normalised_confusion

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 12, size=200)
    y_pred = np.where(rng.random(200) < 0.4, y_true, rng.integers(0, 15, size=200))
    expected = f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)
    assert macro_f1_score(y_true, y_pred) == pytest.approx(expected, abs=1e-12)
    labels = np.union1d(y_true, y_pred)
    reference = np.nan_to_num(confusion_matrix(y_true, y_pred, labels=labels, normalize="true"))
    assert np.allclose(row_normalised_confusion(y_true, y_pred, labels), reference, atol=1e-12)


def test_train_py_does_not_import_sklearn():
    """sklearn costs every run about a second of imports; only LinearProbeCLIP needs it (lazily)."""
    import subprocess
    import sys

    code = "import sys, train, trainers, datasets; sys.exit('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
