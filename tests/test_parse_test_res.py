"""parse_test_res.py on log.txt files written in our engine's (Dassl's) format."""

import math
import re
from pathlib import Path

import parse_test_res


def result_block(acc: float, total: int = 1000) -> str:
    """The lines Classification.evaluate prints (see caspl/evaluation/evaluator.py)."""
    correct = round(total * acc / 100)
    return (
        "=> result\n"
        f"* total: {total:,}\n"
        f"* correct: {correct:,}\n"
        f"* accuracy: {acc:.1f}%\n"
        f"* error: {100 - acc:.1f}%\n"
        f"* macro_f1: {acc - 1:.1f}%\n"
    )


def train_log(final_acc: float, val_accs: tuple[float, ...] = (11.0, 22.0)) -> str:
    """A training run's log: per-epoch validation results, then the end signal and the final test."""
    lines = ["Setting fixed seed: 1", "** Config **", "DATASET:", "  NAME: DescribableTextures"]
    for epoch, val in enumerate(val_accs, 1):
        lines.append(f"epoch [{epoch}/2] batch [1/1] time 0.1 (0.1) loss 1.2 (1.2) lr 2.0e-03 eta 0:00:01")
        lines.append("Evaluate on the *val* set")
        lines.append(result_block(val).rstrip())
    lines += ["Finish training", "Deploy the last-epoch model", "Evaluate on the *test* set"]
    lines.append(result_block(final_acc).rstrip())
    lines.append("Elapsed: 0:00:03")
    return "\n".join(lines) + "\n"


def eval_log(acc: float) -> str:
    """An evaluation-only run's log (no training, so no end-of-training line)."""
    return (
        "Loading weights to prompt_learner from x (epoch = 2)\nEvaluate on the *test* set\n"
        + result_block(acc)
    )


def write_runs(folder: Path, logs: dict[str, str]) -> Path:
    for name, text in logs.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "log.txt").write_text(text)
    return folder


def summary(out: str) -> dict[str, tuple[float, float]]:
    """{metric: (mean, spread)} from the summary lines."""
    found = re.findall(r"^\* (\w+): ([\d.]+)% \+- ([\d.]+)%$", out, flags=re.M)
    return {k: (float(m), float(s)) for k, m, s in found}


def test_mean_and_std_over_seeds_ignore_validation_results(tmp_path, capsys):
    accs = [70.1, 72.4, 75.0]
    write_runs(tmp_path, {f"seed{i}": train_log(a) for i, a in enumerate(accs, 1)})
    assert parse_test_res.main([str(tmp_path)]) == 0
    got = summary(capsys.readouterr().out)
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 3)
    assert got["accuracy"] == (round(mean, 2), round(std, 2))
    assert got["error"][0] == round(100 - mean, 2)
    assert got["macro_f1"][0] == round(mean - 1, 2)


def test_ci95_is_narrower_by_the_normal_quantile(tmp_path, capsys):
    accs = [60.0, 64.0]
    write_runs(tmp_path, {f"seed{i}": train_log(a) for i, a in enumerate(accs, 1)})
    assert parse_test_res.main([str(tmp_path), "--ci95"]) == 0
    mean, ci = summary(capsys.readouterr().out)["accuracy"]
    assert (mean, ci) == (62.0, round(1.96 * 2.0 / math.sqrt(2), 2))


def test_eval_only_logs_need_test_log(tmp_path, capsys):
    write_runs(tmp_path, {"seed1": eval_log(55.5), "seed2": eval_log(56.5)})
    assert parse_test_res.main([str(tmp_path)]) == 1  # no "Finish training" line: nothing counts
    assert "Nothing found" in capsys.readouterr().err
    assert parse_test_res.main([str(tmp_path), "--test-log"]) == 0
    assert summary(capsys.readouterr().out)["accuracy"] == (56.0, 0.5)


def test_unfinished_run_is_skipped_and_named(tmp_path, capsys):
    unfinished = train_log(99.0).split("Finish training")[0]  # killed before the final test
    write_runs(tmp_path, {"seed1": train_log(80.0), "seed2": unfinished})
    assert parse_test_res.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert summary(out)["accuracy"] == (80.0, 0.0)
    assert re.search(r"seed2/log.txt. no result", out)


def test_multi_exp_averages_the_experiment_means(tmp_path, capsys):
    write_runs(tmp_path / "exp-a", {"seed1": train_log(50.0), "seed2": train_log(60.0)})
    write_runs(tmp_path / "exp-b", {"seed1": train_log(70.0)})
    assert parse_test_res.main([str(tmp_path), "--multi-exp"]) == 0
    out = capsys.readouterr().out
    assert out.count("Summary of directory") == 2
    assert re.search(r"Average performance\n\* accuracy: 62.50%", out)  # mean of 55 and 70


def test_single_run_directory_and_missing_log(tmp_path, capsys):
    write_runs(tmp_path, {"seed1": train_log(42.0)})
    assert parse_test_res.main([str(tmp_path / "seed1")]) == 0
    assert summary(capsys.readouterr().out)["accuracy"] == (42.0, 0.0)
    (tmp_path / "seed2").mkdir()
    assert parse_test_res.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no log.txt in" in err and "seed2" in err


def test_reads_a_log_written_by_the_engine_evaluator(tmp_path, capsys):
    """The real evaluator's printed lines (through the Tee logger) parse back to the same accuracy."""
    import torch

    from caspl.evaluation.evaluator import Classification
    from caspl.utils.logger import close_logger, setup_logger

    class Cfg:  # the two keys the evaluator reads
        class TEST:
            PER_CLASS_RESULT = False
            COMPUTE_CMAT = False

    run = tmp_path / "seed1"
    tee = setup_logger(str(run))
    try:
        print("Finish training")
        evaluator = Classification(Cfg(), lab2cname={0: "a", 1: "b"})
        evaluator.reset()
        evaluator.process(
            torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1, 1, 1])
        )
        acc = evaluator.evaluate()["accuracy"]
    finally:
        close_logger(tee)
    capsys.readouterr()
    assert parse_test_res.main([str(tmp_path)]) == 0
    assert summary(capsys.readouterr().out)["accuracy"] == (round(acc, 1), 0.0)
