"""DreamBooth measured end to end on the toy base model: the token learns the subject, the prior keeps the class."""

from __future__ import annotations

import json

import numpy as np

from engine import metrics
from engine.report_card import DRIFT_WARNING_THRESHOLD, drift_warning, report_card
from engine.tokens import IDENTIFIER_POOL, class_prompt, usable_pool
from engine.toy import world
from engine.toy.evaluation import eval_toy_main, sample


def test_every_identifier_and_prompt_word_is_one_token_of_the_toy_model(toy_pipe):
    pipe, _ = toy_pipe
    assert usable_pool(pipe.tokenizer) == list(IDENTIFIER_POOL)
    assert all(len(pipe.tokenizer.tokenize(w)) == 1 for w in ("a", "photo", "of", *world.CLASSES))


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


def test_after_dreambooth_the_token_draws_the_users_dog(toy_eval):
    # Measured: 0.0 before, 0.51 after (python -m engine.toy eval); the bars leave room for other CPUs' rounding.
    assert toy_eval.fidelity_base < 0.1, toy_eval.figures()
    assert toy_eval.fidelity_trained > 0.4, toy_eval.figures()
    assert toy_eval.fidelity_trained > toy_eval.fidelity_base + 0.3, toy_eval.figures()


def test_with_prior_preservation_other_dogs_stay_as_they_were(toy_eval):
    assert toy_eval.drift_with_prior < DRIFT_WARNING_THRESHOLD, toy_eval.figures()
    assert not drift_warning(toy_eval.drift_with_prior)


def test_without_prior_preservation_every_dog_drifts_towards_the_users(toy_eval):
    # Measured: 0.129 with the prior term, 0.157 without it.
    assert toy_eval.drift_without_prior > 1.15 * toy_eval.drift_with_prior, toy_eval.figures()
    assert drift_warning(toy_eval.drift_without_prior), toy_eval.figures()
    photos = toy_eval.pictures["photos"]
    # The drift is towards the subject, not random: bare "dog" samples now look like the user's dog.
    likeness_before = metrics.subject_fidelity(toy_eval.pictures["class_base"], photos)
    likeness_after = metrics.subject_fidelity(toy_eval.pictures["class_without_prior"], photos)
    likeness_with_prior = metrics.subject_fidelity(toy_eval.pictures["class_with_prior"], photos)
    # Measured: 0.06 before, 0.20 without the prior term.
    assert likeness_after > likeness_before + 0.1, (likeness_before, likeness_after)
    assert likeness_with_prior < likeness_after, (likeness_with_prior, likeness_after)


def test_report_card_shows_the_class_before_and_after_with_a_warning(toy_pipe, toy_work_dir, toy_eval):
    pipe, _ = toy_pipe
    pipe.load_lora_weights(str(toy_work_dir / "without_prior" / "lora.safetensors"), adapter_name="card")
    try:
        card = report_card(pipe, "dog", steps=20, guidance=4.0)
    finally:
        pipe.unload_lora_weights()
    assert len(card.before) == len(card.after) == 4
    assert card.warn and card.drift > DRIFT_WARNING_THRESHOLD
    assert card.image.width > card.image.height > 0
    # Without the LoRA the "before" row is exactly the base model's pictures at those seeds.
    base = sample(pipe, class_prompt("dog"), [11, 22, 33, 44], steps=20, guidance=4.0)
    assert [np.asarray(b).tolist() for b in base] == [np.asarray(b).tolist() for b in card.before]


def test_eval_toy_reports_a_missing_model_clearly(tmp_path, capsys):
    assert eval_toy_main(["--model", str(tmp_path / "nowhere")]) == 2
    assert "python -m engine.toy build" in capsys.readouterr().err


def test_the_toy_model_build_is_reproducible(tmp_path):
    from engine.toy.build import BuildPlan, build_toy_model

    plan = BuildPlan(pictures_per_class=8, vae_steps=2, vae_batch=4, diffusion_steps=2, diffusion_batch=4)
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        build_toy_model(folder, plan)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors", "tokenizer/tokenizer.json"):
        assert (folders[0] / part).read_bytes() == (folders[1] / part).read_bytes(), part
    assert json.loads((folders[0] / "toy_build.json").read_text())["plan"]["vae_steps"] == 2
