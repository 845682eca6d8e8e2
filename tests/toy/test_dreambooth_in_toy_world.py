"""DreamBooth measured end to end on the toy base model, at every training seed: the token learns the subject, the
prior keeps the class, and the drift warning tells the two apart by a threshold derived from measured references.

Each bar below is set from the figures of `python -m engine eval-toy` (quoted next to it) with room to spare on
both sides, so a claim that holds only at some seeds, or only by luck of the measurement, fails here.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from engine import metrics
from engine.report_card import DRIFT_SEEDS, DRIFT_WARNING_THRESHOLD, drift_warning, report_card
from engine.tokens import IDENTIFIER_POOL, class_prompt, usable_pool
from tools.toy import evaluation, world
from tools.toy.evaluation import ToyEvalConfig, eval_toy_main, sample

# The first test builds the shared experiment (five seeds × three prior methods, ~250 s on a quiet 2-core runner):
# past the suite's 300 s default once the runner is busy.
pytestmark = pytest.mark.timeout(900)


def test_the_identifier_is_one_token_the_toy_base_model_never_learnt_a_meaning_for(toy_pipe):
    """DreamBooth's rare token: one token of the model's vocabulary that no caption of its training used, so
    what it comes to mean is the user's subject alone."""
    from tools.toy.build import caption_table
    from tools.toy.evaluation import ToyEvalConfig

    pipe, _ = toy_pipe
    token = ToyEvalConfig().token
    assert token in usable_pool(pipe.tokenizer) and token == IDENTIFIER_POOL[0]
    taught = {word for caption in caption_table() for word in caption.split()}
    assert token not in taught
    assert {"a", "photo", "of", *world.CLASSES} <= taught
    # the vocabulary really is a BPE one: a word the world never used falls apart into pieces
    assert len(pipe.tokenizer.tokenize("orange")) > 1


def test_the_toy_base_model_draws_each_class_as_its_shape(toy_pipe):
    pipe, _ = toy_pipe
    fills = {}
    for class_word in world.CLASSES:
        pictures = sample(pipe, class_prompt(class_word), list(range(8)), steps=20, guidance=4.0)
        stats = [metrics.object_stats(p) for p in pictures]
        assert all(s.coverage > metrics.MIN_COVERAGE for s in stats), f"{class_word}: an empty picture"
        fills[class_word] = float(np.median([s.fill_ratio for s in stats]))
    assert fills["cat"] < fills["dog"] < fills["toy"], fills


def test_the_toy_base_model_draws_dogs_in_many_colours(toy_pipe):
    pipe, _ = toy_pipe
    pictures = sample(pipe, class_prompt("dog"), list(range(12)), steps=20, guidance=4.0)
    colours = np.array([metrics.object_stats(p).colour for p in pictures])
    assert colours.std(axis=0).mean() > 0.12, "the base model's dogs should not share one colour"


def test_the_experiment_runs_at_five_training_seeds_or_more(toy_eval):
    assert [run.seed for run in toy_eval.runs] == list(ToyEvalConfig().seeds)
    assert len(set(ToyEvalConfig().seeds)) >= 5
    # The seed really reaches the training: no two seeds train the same LoRA.
    trained = {(run.fidelity_trained, run.drift_with_prior, run.drift_without_prior) for run in toy_eval.runs}
    assert len(trained) == len(toy_eval.runs), toy_eval.table()


def test_at_every_seed_the_token_learns_to_draw_the_users_dog(toy_eval):
    # Measured: 0.0 before at every seed; after 0.19 .. 0.52, mean 0.34 (seeds 6..10: 0.24 .. 0.39, mean 0.33).
    for run in toy_eval.runs:
        assert run.fidelity_base < 0.05, run.figures()
        assert run.fidelity_trained > run.fidelity_base + 0.1, run.figures()
    assert toy_eval.summary()["fidelity_trained"]["mean"] > 0.25, toy_eval.summary()


def test_prior_preservation_lowers_the_class_drift_at_every_seed_and_by_more_than_its_spread(toy_eval):
    # Measured: the prior saves 0.009 .. 0.032 of drift, mean 0.021, std 0.010 (seeds 6..10: 0.009 .. 0.037,
    # mean 0.026, std 0.011).
    saved = [run.drift_saved_by_prior for run in toy_eval.runs]
    assert min(saved) > 0.004, toy_eval.table()
    # Not a difference a luckier draw of seeds would erase: the mean saving is larger than its spread.
    assert statistics.fmean(saved) > statistics.stdev(saved), saved


def test_output_preservation_keeps_the_class_and_the_likeness_at_every_seed(toy_eval):
    # PRIOR=output (the family default) chosen by this experiment. Measured at seeds 1..5 (docs/bench/
    # cpu-ci-2026-12-06-eval-toy.json): drift 0.001 .. 0.010 (mean 0.004; class images 0.010 .. 0.027, mean 0.019),
    # saved against no prior 0.026 .. 0.047 (mean 0.035, std 0.010); fidelity 0.27 .. 0.59 (mean 0.49).
    saved = [run.drift_saved_by_output for run in toy_eval.runs]
    assert min(saved) > 0.01, toy_eval.table()
    assert statistics.fmean(saved) > statistics.stdev(saved), saved
    assert toy_eval.figures()["prior_methods"]["chosen"] == "output"
    for run in toy_eval.runs:
        assert run.fidelity_trained_output > run.fidelity_base + 0.1, run.figures()
        assert not drift_warning(run.drift_output), run.figures()


def test_the_drift_warning_flags_every_run_without_prior_and_most_runs_with_it_pass(toy_eval):
    # Measured against the threshold 0.026: without the prior 0.030 .. 0.048 (mean 0.039), with it 0.010 ..
    # 0.027 (mean 0.019). The worst seed with the prior (5, at 0.0265) sits on the line, so "no run with the
    # prior is flagged" does not hold at every seed; what holds with room is asserted.
    without = [run.drift_without_prior for run in toy_eval.runs]
    with_prior = [run.drift_with_prior for run in toy_eval.runs]
    assert all(drift_warning(d) for d in without), without
    assert statistics.fmean(without) > 1.3 * DRIFT_WARNING_THRESHOLD, without
    assert statistics.fmean(with_prior) < 0.85 * DRIFT_WARNING_THRESHOLD, with_prior
    assert sum(drift_warning(d) for d in with_prior) < len(with_prior) / 2, with_prior


def test_without_prior_preservation_the_class_drifts_towards_the_users_dog(toy_eval):
    # The drift is towards the subject, not random: bare "dog" samples come to look like the user's dog.
    # Measured: 0.05 for the base model; 0.23 .. 0.33 without the prior term, 0.09 .. 0.16 with it, at least
    # 0.07 lower at every seed.
    for run in toy_eval.runs:
        assert run.class_likeness_without_prior > run.class_likeness_base + 0.1, run.figures()
        assert run.class_likeness_with_prior < run.class_likeness_without_prior - 0.03, run.figures()


def test_the_drift_threshold_follows_its_rule_on_freshly_measured_references(toy_eval):
    refs = toy_eval.references
    # The metric's two ends: about zero for the class drawn again, clearly more for another class.
    # Measured: noise floor -0.0020, cat 0.0547.
    assert abs(refs.noise_floor) < 0.01, refs.figures()
    assert refs.other_class > refs.noise_floor + 0.03, refs.figures()
    assert min(refs.other_class_sets) > max(refs.noise_floor_sets), refs.figures()
    # The threshold in use is the rule's answer for today's metric and model, to within the rounding of the
    # comment that derives it; a changed metric, model or rule moves the answer and fails here.
    assert refs.threshold == pytest.approx(DRIFT_WARNING_THRESHOLD, abs=0.0015), refs.figures()


def test_the_report_card_measures_drift_on_as_many_pictures_as_the_calibration():
    # The threshold's references and the experiment are judged on this many pictures; the card must not measure on
    # fewer, where the figure's noise would decide the warning.
    assert len(DRIFT_SEEDS) >= len(ToyEvalConfig().sample_seeds)


def test_the_report_card_warns_for_the_run_that_drifted_most_and_not_for_the_least(toy_pipe, toy_work_dir, toy_eval):
    # The card measures on its own seeds (DRIFT_SEEDS), so it must agree with the experiment where the experiment
    # is clear: the most-drifted run without the prior, and the least-drifted run with it.
    pipe, _ = toy_pipe
    config = ToyEvalConfig()
    most = max(toy_eval.runs, key=lambda run: run.drift_without_prior)
    least = min(toy_eval.runs, key=lambda run: run.drift_with_prior)
    cards = {}
    for name, run in (("without_prior", most), ("with_prior", least)):
        pipe.load_lora_weights(str(toy_work_dir / f"seed_{run.seed}" / name / "lora.safetensors"), adapter_name="card")
        try:
            cards[name] = report_card(pipe, "dog", steps=config.sample_steps, guidance=config.guidance)
        finally:
            pipe.unload_lora_weights()
    assert cards["without_prior"].warn, (most.figures(), cards["without_prior"].drift)
    assert not cards["with_prior"].warn, (least.figures(), cards["with_prior"].drift)
    card = cards["without_prior"]
    # The figure is measured on every seed drawn, not only on the pairs the card shows.
    assert len(card.before) == len(card.after) == len(DRIFT_SEEDS)
    assert card.drift == metrics.class_drift(card.before, card.after)
    assert card.image.width > card.image.height > 0
    # Without the LoRA the "before" row is exactly the base model's pictures at those seeds.
    base = sample(pipe, class_prompt("dog"), list(DRIFT_SEEDS[:4]), config.sample_steps, config.guidance)
    assert [np.asarray(b).tolist() for b in base] == [np.asarray(b).tolist() for b in card.before[:4]]


def test_eval_toy_prints_one_entry_per_seed_with_mean_and_spread(toy_eval, monkeypatch, capsys):
    asked = []

    def measured(config, *args, **kwargs):
        asked.append(config)
        return toy_eval

    monkeypatch.setattr(evaluation, "run_toy_eval", measured)
    assert eval_toy_main(["--seeds", "3", "8", "13"]) == 0
    assert asked[0].seeds == (3, 8, 13)
    out = json.loads(capsys.readouterr().out)
    assert [row["seed"] for row in out["seeds"]] == [run.seed for run in toy_eval.runs]
    figures = ("fidelity_base", "fidelity_trained", "drift_with_prior", "drift_without_prior")
    assert all(name in row for row in out["seeds"] for name in figures)
    for name in figures:
        assert set(out["summary"][name]) == {"mean", "std", "min", "max"}
    values = [run.drift_with_prior for run in toy_eval.runs]
    assert out["summary"]["drift_with_prior"]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-4)
    assert out["summary"]["drift_with_prior"]["std"] == pytest.approx(statistics.stdev(values), abs=1e-4)
    assert out["references"]["threshold_by_rule"] == pytest.approx(toy_eval.references.threshold, abs=1e-4)


@pytest.mark.parametrize("command", ["python -m engine eval-toy", "python -m tools.toy eval"])
def test_eval_toy_reports_a_missing_model_clearly(command, tmp_path, capsys):
    # Both commands reach the same evaluation: the engine's is a thin entry into tools/toy.
    from engine.cli import main as engine_main
    from tools.toy.__main__ import main as toy_main

    run = engine_main if command.startswith("python -m engine") else toy_main
    verb = command.split()[-1]
    assert run([verb, "--model", str(tmp_path / "nowhere")]) == 2
    assert "python -m tools.toy build" in capsys.readouterr().err


def test_the_toy_model_build_is_reproducible(tmp_path):
    from tools.toy.build import BuildPlan, build_toy_model

    plan = BuildPlan(pictures_per_class=8, vae_steps=2, vae_batch=4, diffusion_steps=2, diffusion_batch=4)
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        build_toy_model(folder, plan)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer.json"):
        assert (folders[0] / part).read_bytes() == (folders[1] / part).read_bytes(), part
    assert json.loads((folders[0] / "toy_build.json").read_text())["plan"]["vae_steps"] == 2
