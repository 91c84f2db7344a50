"""The benchmark harness: quick mode runs in-process and reports every row kind with consistent ratios."""

import json
from pathlib import Path

import pytest
import torch

from caspl.bench import main
from caspl.bench.harness import available_methods, clamp_depths, class_names, find_config, load_trainers
from caspl.bench.measure import PeakMemory, measure
from caspl.bench.shapes import layer_count, random_weights
from caspl.config import get_cfg_default
from caspl.engine.clip_trainer import CLIPPromptTrainer
from caspl.registry import TRAINER_REGISTRY
from caspl.vlm import build as vlm_build
from caspl.vlm.model import PromptedCLIP
from caspl.vlm.prompted import PromptGroup

QUICK = [
    "--quick",
    "--batch-size",
    "2",
    "--classes",
    "12",
    "--train-classes",
    "3",
    "--repeats",
    "1",
    "--warmup",
    "0",
]


class _ProbeModel(PromptedCLIP):
    """A CoOp-like text group and an IVLP-like deep vision group: both towers get gradients."""

    def __init__(self, clip_model, classnames, cascade) -> None:
        super().__init__(clip_model, [f"{c}." for c in classnames], [2], cascade=cascade)
        self.prompt_learner.text = PromptGroup(2, clip_model.ln_final.weight.shape[0])
        self.prompt_learner.vision = PromptGroup(2, clip_model.visual.conv1.weight.shape[0], depth=2)

    def method_text_tokens(self):
        return [self.prompt_learner.text()]

    def method_vision_tokens(self):
        return [self.prompt_learner.vision()]


class BenchProbe(CLIPPromptTrainer):
    """A minimal prompt learner registered only by this test file (the real methods may not exist yet)."""

    cfg_node = "CASPL"

    def build_prompt_model(self, clip_model, classnames, cascade):
        return _ProbeModel(clip_model, classnames, cascade)


load_trainers()
if "BenchProbe" not in TRAINER_REGISTRY:
    TRAINER_REGISTRY.register(BenchProbe)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        methods = ",".join(["BenchProbe", *available_methods()])
        assert main([*QUICK, "--methods", methods, "--json", str(out)]) == 0
    return json.loads(out.read_text()), buf.getvalue()


@pytest.mark.slow
def test_quick_json_has_every_kind_with_positive_numbers(quick_run: tuple[dict, str]) -> None:
    doc, _ = quick_run
    rows = doc["rows"]
    assert {r["kind"] for r in rows} == set("abcder")
    fields = {"name", "backbone", "batch", "device", "precision", "images_per_s", "ms_per_step",
              "peak_mem_mb", "ratio_to_floor"}  # fmt: skip
    for r in rows:
        assert fields <= set(r), r
        assert r["images_per_s"] > 0 and r["ms_per_step"] > 0 and r["peak_mem_mb"] > 0, r
        assert r["device"] == "cpu" and r["batch"] == 2
    names = [r["name"] for r in rows]
    assert "train BenchProbe" in names and "train CasPL_BenchProbe" in names
    assert doc["meta"]["settings"]["backbone"] == "tiny-vit"
    assert doc["meta"]["machine"]["torch"] == torch.__version__


@pytest.mark.slow
def test_training_and_boost_ratios_are_step_over_floor(quick_run: tuple[dict, str]) -> None:
    rows = {r["name"]: r for r in quick_run[0]["rows"]}
    for name in ("BenchProbe", "CasPL_BenchProbe"):
        step, floor = rows[f"train {name}"], rows[f"floor {name}"]
        assert step["floor"] == f"floor {name}"
        assert step["ratio_to_floor"] == pytest.approx(step["ms_per_step"] / floor["ms_per_step"])
        assert floor["ratio_to_floor"] is None
        # the reference computation (77-token text tower) was timed in the same interleaved run
        reference = rows[f"reference {name} (77-token text tower)"]
        assert reference["kind"] == "r" and reference["classes"] == step["classes"] == 3
        assert step["speedup"] == pytest.approx(reference["ms_per_step"] / step["ms_per_step"])
    # the cascaded step is compared with its base method as well
    cascaded = rows["train CasPL_BenchProbe"]
    assert cascaded["ratio"] == pytest.approx(
        cascaded["ms_per_step"] / rows["train BenchProbe"]["ms_per_step"]
    )
    boost = next(r for r in quick_run[0]["rows"] if r["kind"] == "a")
    parts = (
        rows["floor: teacher forward"]["ms_per_step"]
        + rows["floor: student fwd/bwd (KD loss)"]["ms_per_step"]
    )
    assert boost["ratio_to_floor"] == pytest.approx(boost["ms_per_step"] / parts)
    assert boost["backbone"] == "tiny-vit<-small-vit" and boost["note"].startswith("8+8 tokens")
    reference = rows["reference CasPL_Boost step (77-token text tower)"]
    assert boost["speedup"] == pytest.approx(reference["ms_per_step"] / boost["ms_per_step"])


@pytest.mark.slow
def test_eval_and_inference_ratios_and_targets(quick_run: tuple[dict, str]) -> None:
    doc = quick_run[0]
    evals = [r for r in doc["rows"] if r["kind"] == "c"]
    cached = next(r for r in evals if "cached" in r["name"])
    per_batch = next(r for r in evals if "per batch" in r["name"])
    assert cached["ratio"] == pytest.approx(per_batch["ms_per_step"] / cached["ms_per_step"])
    infer = [r for r in doc["rows"] if r["kind"] == "d"]
    assert len(infer) == 2 and infer[1]["ratio"] == pytest.approx(
        infer[1]["ms_per_step"] / infer[0]["ms_per_step"]
    )
    build = next(r for r in evals if "text-cache build" in r["name"])
    build_ref = next(r for r in doc["rows"] if r["name"].startswith("reference eval"))
    assert build["speedup"] == pytest.approx(build_ref["ms_per_step"] / build["ms_per_step"])
    targets = doc["targets"]
    # a training step per method and per cascade (+ PromptSRC's speedups), eval (2), inference, boosting (2)
    speedups = 2 if "PromptSRC" in available_methods() else 0
    assert len(targets) == 2 * (1 + len(available_methods())) + speedups + 5
    for t in targets:
        assert t["met"] == (t["value"] >= t["limit"] if t["higher_is_better"] else t["value"] <= t["limit"])
        # tiny shapes: no target applies, so none can fail --check
        assert not t["applies"] and not t["missed"] and "ViT-B/16" in t["scope"]


def test_check_fails_only_on_a_missed_target_that_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    from caspl.bench import suite

    args = [*QUICK, "--kinds", "d", "--eval-method", "CasPL_BenchProbe", "--check"]
    monkeypatch.setattr(suite, "INFER_LIMIT", 0.0)  # unmeetable
    assert main(args) == 0  # tiny shapes: the target does not apply
    monkeypatch.setattr(suite.Suite, "on_target_shapes", lambda self, *a, **k: True)
    assert main(args) == 1
    assert main([a for a in args if a != "--check"]) == 0


@pytest.mark.slow
def test_table_prints_every_row(quick_run: tuple[dict, str]) -> None:
    doc, printed = quick_run
    assert "| kind" in printed and "x floor" in printed
    for r in doc["rows"]:
        assert r["name"] in printed
    assert "target" in printed


@pytest.mark.slow
@pytest.mark.parametrize("method", available_methods() or [pytest.param("none", marks=pytest.mark.skip)])
def test_each_registered_method_and_its_cascade_is_measured(quick_run: tuple[dict, str], method: str) -> None:
    rows = {r["name"]: r for r in quick_run[0]["rows"]}
    for name in (method, f"CasPL_{method}"):
        assert rows[f"train {name}"]["ratio_to_floor"] > 0 and rows[f"floor {name}"]["ms_per_step"] > 0
    assert rows[f"train CasPL_{method}"]["ratio_of"] == f"vs {method}"


def test_bad_flags_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["--quick", "--kinds", "xyz"])
    with pytest.raises(KeyError, match="NoSuchMethod"):
        main([*QUICK, "--kinds", "b", "--methods", "NoSuchMethod"])


def test_measure_interleaves_and_counts_calls() -> None:
    calls: list[str] = []
    resets = []
    result = measure(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
        torch.device("cpu"),
        warmup=1,
        repeats=3,
        reset=lambda: resets.append(1),
    )
    assert calls == ["a", "b"] * 4
    assert len(resets) == 9  # before every call, and once at the end
    assert all(len(m.seconds) == 3 for m in result.values())
    m = result["a"]
    m.seconds = [0.3, 0.1, 0.2]
    assert m.min_s == 0.1 and m.spread == pytest.approx(3.0)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_native_allocation() -> None:
    with PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del x
    assert mem.peak_mb - mem.base_mb > 48


def test_random_weights_patches_and_restores_build_clip() -> None:
    original = vlm_build.build_clip
    built: list = []
    with random_weights(built):
        from caspl.engine import clip_trainer

        model = clip_trainer.build_clip("tiny-vit")
        assert vlm_build.build_clip is not original
    assert vlm_build.build_clip is original and clip_trainer.build_clip is original
    assert built == [model] and model.visual.input_resolution == 32


def test_depths_are_clamped_to_the_backbone() -> None:
    cfg = get_cfg_default()
    cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT = 9
    clamp_depths(cfg.TRAINER, layer_count("tiny-vit"))
    assert cfg.TRAINER.CASPL.BOOST.PROMPT_DEPTH_TEXT == 4
    assert layer_count("ViT-L/14") == 12  # the text tower is the shallower one
    assert class_names(3) == ["tench", "goldfish", "great white shark"]  # ImageNet's, in order
    assert class_names(1001)[-1] == "tench 1" and len(class_names(1000)) == 1000


def test_a_method_and_its_cascade_measure_the_same_paper_setting(tmp_path: Path) -> None:
    configs = Path(__file__).resolve().parents[1] / "configs/trainers"
    assert (
        find_config("CoOp", configs)
        == find_config("CasPL_CoOp", configs)
        == configs / "CoOp/vit_b16_ep50.yaml"
    )
    assert find_config("CasPL_Boost", configs).name == "vit_b16_l14_ep20_4+4ctx_promptkd.yaml"
    (tmp_path / "Mine").mkdir()
    (tmp_path / "Mine/demo_tiny.yaml").write_text("OPTIM:\n  MAX_EPOCH: 1\n")
    assert find_config("Mine", tmp_path) is None  # the demo's tiny settings are never a benchmark setting
    (tmp_path / "Mine/b.yaml").write_text("OPTIM:\n  MAX_EPOCH: 1\n")
    assert find_config("CasPL_Mine", tmp_path) == tmp_path / "Mine/b.yaml"


def _gpu_check(tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    args = [
        "--out",
        str(out),
        "--device",
        "cpu",
        "--steps",
        "3",
        "--classes",
        "30",
        "--large-batch",
        "8",
        *extra,
    ]
    proc = subprocess.run(
        ["bash", str(repo / "scripts/gpu_check.sh"), *args], cwd=repo, env=env, capture_output=True, text=True
    )
    assert (out / "report.md").is_file(), proc.stdout + proc.stderr
    return proc.returncode, json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_gpu_check_runs_end_to_end_on_cpu_and_says_what_it_skipped(tmp_path: Path) -> None:
    rc, doc, md = _gpu_check(tmp_path, "--trainers", "CoOp,CasPL_Boost", "--skip-torchrun")
    assert rc == 0 and doc["ok"] and doc["device"] == "cpu" and doc["backbone"] == "tiny-vit", md
    runs = [r for r in doc["results"] if r["check"] == "train"]
    assert {(r["trainer"], r["precision"]) for r in runs} == {
        (t, p) for t in ("CoOp", "CasPL_Boost") for p in ("fp32", "bf16")
    }
    for r in runs:  # finite and decreasing: what "ok" asserts
        assert len(r["losses"]) == 3 and r["losses"][-1] < r["losses"][0]
    boost = [r for r in doc["results"] if r["check"] == "throughput"]
    assert [r["batch"] for r in boost] == [4, 8] and all(r["images_per_s"] > 0 for r in boost)
    skipped = " ".join(doc["skipped"])
    assert "fp16 and amp: CUDA only" in skipped and "TRAIN.COMPILE" in skipped and "tiny shapes" in skipped
    assert "PASS" in md and "| train | CoOp | bf16 |" in md and "Skipped:" in md


@pytest.mark.slow
def test_gpu_check_torchrun_on_cpu_uses_gloo(tmp_path: Path) -> None:
    rc, doc, _ = _gpu_check(tmp_path, "--trainers", "CoOp")
    run = next(r for r in doc["results"] if r["check"] == "torchrun")
    assert rc == 0 and run["ok"] and run["backend"] == "gloo"
    assert any("nccl: CUDA only" in s for s in doc["skipped"])


def test_text_checkpoint_checkpoints_ours_and_the_reference_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--text-checkpoint: both sides of the ratio checkpoint their text towers, only truncation differs."""
    from caspl.vlm.prompted import PromptedTextEncoder

    seen = []
    original = PromptedTextEncoder.with_options

    def recording(self, options):
        seen.append((self.options, options))
        return original(self, options)

    monkeypatch.setattr(PromptedTextEncoder, "with_options", recording)
    out = tmp_path / "bench.json"
    args = [*QUICK, "--kinds", "b", "--methods", "PromptSRC", "--without-cascades", "--json", str(out)]
    assert main([*args, "--text-checkpoint"]) == 0
    assert seen and all(ours.checkpoint and ours.truncate for ours, _ in seen)
    assert all(ref.checkpoint and not ref.truncate and ref.chunk == ours.chunk for ours, ref in seen)
    doc = json.loads(out.read_text())
    assert doc["meta"]["settings"]["text_checkpoint"] is True
    assert any(r["kind"] == "r" and "checkpointed" in r["name"] for r in doc["rows"])
    seen.clear()
    assert main(args) == 0  # the default: the published one-pass 77-token tower
    assert seen and all(not ours.checkpoint for ours, _ in seen)
    assert all(not ref.truncate and not ref.checkpoint and ref.chunk == 0 for _, ref in seen)
