"""The reference-trainer comparison: its timing, its command lines and its JSON, without the reference script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import reference_bench as rb

REPO = Path(__file__).resolve().parents[2]

TQDM_NOISE = (
    "Loading pipeline components...: 100%|##########| 5/5 [00:00<00:00, 45.86it/s]\n"
    "Steps:  50%|#####     | 5/10 [00:03<00:03,  1.60it/s, loss=0.2]\r"
    "Steps: 100%|##########| 10/10 [00:05<00:00,  2.50it/s, loss=0.1]\n"
)


def settings(**changes) -> rb.Settings:
    values = dict(
        steps=50, warmup=10, rank=4, resolution=64, num_class_images=10, num_photos=5, mixed_precision="no",
        device="cpu", instance_prompt="a photo of sks dog", class_prompt="a photo of dog",
    )
    values.update(changes)
    return rb.Settings(**values)


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_step_markers_are_read_from_the_reference_output_and_nothing_else():
    output = (
        "07/01/2026 - INFO - Running training\n"
        f"{rb.STEP_MARKER} 1 100.250000\n"
        + TQDM_NOISE
        + f"  {rb.STEP_MARKER} 2 100.750000  \n"
        + f"{rb.STEP_MARKER} three 101.0\n"
    )
    assert rb.parse_step_markers(output) == [(1, 100.25), (2, 100.75)]


def test_without_markers_the_last_rate_of_the_training_bar_is_used():
    assert rb.parse_tqdm_rate(TQDM_NOISE) == pytest.approx(2.5)
    slow = "Steps: 100%|##########| 4/4 [00:10<00:00,  2.50s/it, loss=0.1]\n"
    assert rb.parse_tqdm_rate(slow) == pytest.approx(0.4)
    assert rb.parse_tqdm_rate("Loading: 100%|###| 5/5 [00:00<00:00, 45.86it/s]\n") is None


def test_warm_up_steps_do_not_count_towards_the_steady_rate():
    # Two slow start-up steps (1 s each), then ten steps of 0.1 s: steady state is 10 steps/s.
    marks = [(1, 1.0), (2, 2.0)] + [(2 + i, 2.0 + 0.1 * i) for i in range(1, 11)]
    rate = rb.steady_rate(marks, warmup=2)
    assert rate.steps_per_s == pytest.approx(10.0)
    assert rate.median_step_ms == pytest.approx(100.0)
    assert rate.timed_steps == 10
    assert rb.steady_rate(marks, warmup=0).steps_per_s < 6


def test_too_few_steps_after_warm_up_is_an_error_not_a_number():
    with pytest.raises(rb.BenchError):
        rb.steady_rate([(1, 0.0), (2, 1.0), (3, 2.0)], warmup=3)


def test_reference_trains_with_prior_preservation_one_instance_and_one_class_example():
    s = settings(steps=80, rank=8, resolution=512, num_class_images=12)
    args = rb.reference_args(s, Path("/m"), Path("/photos"), Path("/classes"), Path("/out"))
    assert "--with_prior_preservation" in args
    assert flag(args, "--train_batch_size") == "1"
    assert flag(args, "--num_class_images") == "12"  # as many as pre-generated: it generates none itself
    assert flag(args, "--class_data_dir") == "/classes"
    assert flag(args, "--max_train_steps") == "80"
    assert int(flag(args, "--checkpointing_steps")) > 80
    assert flag(args, "--rank") == "8"
    assert flag(args, "--resolution") == "512"
    assert flag(args, "--instance_prompt") == "a photo of sks dog"
    assert flag(args, "--class_prompt") == "a photo of dog"
    assert flag(args, "--lr_scheduler") == "constant"
    assert flag(args, "--mixed_precision") == "no"
    assert not any(a.startswith("--validation") for a in args)
    assert "--pre_compute_text_embeddings" in args
    plain = rb.reference_args(settings(reference_precomputes_text=False), Path("/m"), Path("/p"), Path("/c"), Path("/o"))
    assert "--pre_compute_text_embeddings" not in plain


def test_mixed_precision_follows_our_runtime():
    assert rb.mixed_precision_for("cpu", "float32") == "no"
    assert rb.mixed_precision_for("cuda", "bfloat16") == "bf16"
    assert rb.mixed_precision_for("cuda", "float16") == "fp16"


def test_both_launchers_run_the_script_through_the_step_hook():
    args = ["--rank", "4"]
    plain = rb.reference_command(Path("/ref/train.py"), args, python="py")
    assert plain == ["py", "-m", "tools.reference_bench", "run-reference", "/ref/train.py", "--", "--rank", "4"]
    launched = rb.reference_command(
        Path("/ref/train.py"), args, python="py", launcher="accelerate", mixed_precision="bf16"
    )
    assert launched[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert launched[-7:] == plain[1:]
    assert flag(launched, "--num_processes") == "1"
    assert flag(launched, "--mixed_precision") == "bf16"
    with pytest.raises(ValueError):
        rb.reference_command(Path("/ref/train.py"), args, launcher="torchrun")


def make_result(ours: list[float], theirs: list[float]) -> dict:
    return rb.build_result(
        settings=settings(),
        ours=[rb.Rate(v, 1000 / v, 40) for v in ours],
        reference=[rb.Rate(v, 1000 / v, 40) for v in theirs],
        device={"type": "cpu", "name": "x86_64"},
        versions={"torch": "2.13.0+cpu", "diffusers": "0.42.1"},
        commands={"harness": "python -m tools.reference_bench --reference R", "reference": "python -m ..."},
        reference_script={"name": "train_dreambooth_lora.py", "sha256": "0" * 64, "source": ""},
        host="ci",
        date="2026-11-21",
    )


def test_result_reports_median_rounds_and_their_ratio():
    result = json.loads(json.dumps(make_result(ours=[9.0, 4.0, 8.0], theirs=[2.0, 4.0, 1.0])))
    rb.check_result(result)
    assert result["ours_steps_per_s"] == 8.0
    assert result["reference_steps_per_s"] == 2.0
    assert result["ratio"] == 4.0
    assert result["ratio_median_step"] == pytest.approx(4.0)
    assert len(result["rounds"]) == 3
    assert result["settings"]["instance_batch"] == result["settings"]["class_batch"] == 1


def test_a_result_with_a_wrong_ratio_or_missing_command_is_rejected():
    result = make_result(ours=[8.0], theirs=[2.0])
    result["ratio"] = 2.0
    with pytest.raises(ValueError, match="ratio"):
        rb.check_result(result)
    result = make_result(ours=[8.0], theirs=[2.0])
    result["commands"]["reference"] = ""
    with pytest.raises(ValueError, match="reference"):
        rb.check_result(result)


def test_result_files_are_named_by_device_host_and_date():
    assert rb.result_file_name("cpu", "CI box_1", "2026-11-21") == "cpu-ci-box-1-2026-11-21-reference.json"
    assert rb.result_file_name("h200", "", "2026-11-21") == "h200-ci-2026-11-21-reference.json"


def test_committed_reference_results_have_the_promised_shape():
    files = sorted((REPO / "docs" / "bench").glob("*-reference.json"))
    assert files, "docs/bench holds no reference comparison"
    for path in files:
        result = json.loads(path.read_text(encoding="utf-8"))
        rb.check_result(result)
        # Results recorded before the bench moved to tools/ name its old module path, engine.reference_bench.
        assert "reference_bench --reference" in result["commands"]["harness"], path.name


FAKE_TRAINER = """
import sys
from pathlib import Path
from tqdm.auto import tqdm

Path(sys.argv[sys.argv.index("--record") + 1]).write_text(" ".join(sys.argv[1:]))
for _ in tqdm(range(3), desc="Loading"):
    pass
bar = tqdm(range(int(sys.argv[sys.argv.index("--steps") + 1])), desc="Steps")
for _ in range(bar.total):
    bar.update(1)
"""


def test_step_hook_times_each_training_step_of_a_script_run_as_main(tmp_path):
    script = tmp_path / "trainer.py"
    script.write_text(FAKE_TRAINER)
    record = tmp_path / "argv.txt"
    command = rb.reference_command(script, ["--steps", "6", "--record", str(record)])
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    marks = rb.parse_step_markers(done.stdout)
    assert [step for step, _ in marks] == [1, 2, 3, 4, 5, 6]
    assert [t for _, t in marks] == sorted(t for _, t in marks)
    assert record.read_text() == f"--steps 6 --record {record}"


def test_the_harness_refuses_a_missing_reference_script(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tools.reference_bench", "--reference", str(tmp_path / "absent.py"), "--steps", "4"],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert done.returncode == 1
    assert "is not a file" in done.stderr
