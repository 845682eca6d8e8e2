"""Time to a personal model: output preservation, the PRIOR setting, shared caches and the report card in the library."""

from __future__ import annotations

import json
import os
import shutil

import pytest


def test_output_preservation_holds_the_class_prompt_to_the_frozen_base_prediction(pipe, runtime, photos, tmp_path,
                                                                                  make_spec):
    import torch
    import torch.nn.functional as F

    from engine.objectives import step_batch
    from engine.train_steps import Loop, cache_inputs, objective_for, with_class_row

    spec = make_spec(tmp_path, photos, prior="output")
    method = spec.prior_method()
    assert method == "output"
    prepared, groups = cache_inputs(pipe, spec, 64, method, [], [])
    with torch.no_grad():  # a LoRA that already moved the model, so "base" and "trained" differ
        for group in groups:
            for param in group["params"]:
                param.add_(torch.randn_like(param) * 0.5)
    loop = Loop(pipe, spec, runtime, prepared, method, 64, None, [], lambda _p: None, None, None, lambda _s: None)
    objective = objective_for(pipe, runtime)
    _, instance_loss, class_loss = loop.step_losses(3, objective)

    batch = with_class_row(step_batch(3, spec.seed, prepared.instance, None, objective.num_timesteps))
    noised = objective.noise(pipe, batch)
    with torch.no_grad():
        pipe.unet.disable_adapters()  # peft's own switch: the frozen model as peft defines it
        try:
            frozen = objective.predict(pipe, noised, prepared.base_embeds, rows=slice(1, 2))
        finally:
            pipe.unet.enable_adapters()
        trained = objective.predict(pipe, noised, prepared.embeds)[1:2]  # batched as the step runs it
        noise_target = F.mse_loss(trained, noised.target[1:2]).item()
    assert class_loss.item() == pytest.approx(F.mse_loss(trained, frozen).item(), rel=1e-4)
    assert abs(class_loss.item() - noise_target) > 1e-3  # the class row is not held to the noise
    assert class_loss.item() > 0  # the LoRA moved it: the frozen base is another model than the trained one
    assert torch.equal(batch.latents[0], batch.latents[1])  # the class branch sits on the instance's noisy latents
    assert instance_loss.item() > 0


def _cli_train(monkeypatch, tmp_path, tiny_model_dir, make_photo, capsys, prior: str | None, out: str):
    from engine.cli import main

    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for seed in range(3):
        make_photo(seed, (80, 80)).save(photos / f"p{seed}.png")
    for name, value in dict(DATA_DIR=str(tmp_path / "data"), BASE_MODEL=str(tiny_model_dir), DEVICE="cpu",
                            NUM_CLASS_IMAGES="2", DRAW_STEPS="2", PRIOR=prior or "").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRAIN_STEPS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--photos", "photos", "--class", "dog", "--out", out, "--steps", "2"]) == 0
    return capsys.readouterr()


def _class_pictures(tmp_path) -> list:
    return sorted((tmp_path / "data" / "class_images").rglob("*.png"))


def test_python_m_engine_train_writes_a_report_card_and_honours_prior(monkeypatch, tmp_path, tiny_model_dir,
                                                                      make_photo, capsys):
    from PIL import Image

    done = _cli_train(monkeypatch, tmp_path, tiny_model_dir, make_photo, capsys, "output", "out")
    card = tmp_path / "out" / "report_card.png"
    assert card.is_file() and Image.open(card).width > 128
    assert "report card: out/report_card.png  (class drift " in done.out
    assert _class_pictures(tmp_path) == []  # output preservation draws no class set
    assert "class_images" not in done.err

    _cli_train(monkeypatch, tmp_path, tiny_model_dir, make_photo, capsys, "class-images", "out2")
    assert len(_class_pictures(tmp_path)) == 2  # NUM_CLASS_IMAGES of them, for the paper's method
    assert (tmp_path / "out2" / "report_card.png").is_file()


def test_report_card_before_pictures_are_drawn_once_per_class_and_shared(pipe, runtime, photos, tmp_path, make_spec):
    from engine.bench_time_to_model import counting_passes
    from engine.training import train

    shared = tmp_path / "before"
    cards = []
    for name in ("first", "second"):
        spec = make_spec(tmp_path / name, photos, prior="off", steps=2, sample_seeds=(), before_dir=shared,
                         checkpoint_dir=None)
        with counting_passes(pipe) as counter:
            phases: list[tuple[str, int]] = []
            result = train(spec, pipe=pipe, runtime=runtime,
                           on_phase=lambda n, c=counter, seen=phases: seen.append((n, c.count)))
        counts = dict(phases)
        cards.append((counts["done"] - counts["report_card"], result))
    (first_passes, first), (second_passes, second) = cards
    assert first.report_card_path.is_file() and second.report_card_path.is_file()
    assert second_passes * 2 == first_passes  # the 16 "before" pictures came from the cache the first one filled
    assert len(list(shared.rglob("*.png"))) == 16


def test_class_image_cache_key_survives_a_copied_or_touched_model(tiny_model_dir, tmp_path):
    from engine.base_model import base_model_key

    key = base_model_key(tiny_model_dir)
    elsewhere = tmp_path / "another-host" / "models" / "renamed"
    shutil.copytree(tiny_model_dir, elsewhere)
    for file in elsewhere.rglob("*"):
        if file.is_file():
            os.utime(file, (1_000_000_000, 1_000_000_000))
    assert base_model_key(elsewhere) == key

    weights = next(elsewhere.joinpath("unet").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # another model: one weight changed, same size and name
    weights.write_bytes(bytes(data))
    assert base_model_key(elsewhere) != key


def test_time_to_model_bench_prints_both_recipes_cold_and_warm_with_counted_passes(capsys):
    from engine.cli import main
    from engine.training import PHASES

    steps = 2
    assert main(["bench", "--time-to-model", "--steps", str(steps), "--photos", "1", "--num-class-images", "2",
                 "--draw-steps", "2"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["family"] == "sd1" and figures["device"] == "cpu"
    assert set(figures["recipes"]) == {"paper", "default"}
    for recipe in figures["recipes"].values():
        assert set(recipe) == {"cold", "warm"}
        for run in recipe.values():
            assert set(run) == {"seconds", "denoiser_passes", "phases"}
            assert set(run["phases"]) == set(PHASES)
            assert all(set(p) == {"seconds", "denoiser_passes"} for p in run["phases"].values())
            assert run["denoiser_passes"] == sum(p["denoiser_passes"] for p in run["phases"].values())
    paper, default = figures["recipes"]["paper"], figures["recipes"]["default"]
    # A training step is one forward on [instance, class]; output preservation adds the frozen base's class row.
    assert paper["cold"]["phases"]["train"]["denoiser_passes"] == 2 * steps
    assert default["cold"]["phases"]["train"]["denoiser_passes"] == 3 * steps
    # Four samples, two sampler steps, each under classifier-free guidance: two latents per image and step.
    assert paper["cold"]["phases"]["samples"]["denoiser_passes"] == 4 * 2 * 2
    # Report card: 16 seeds before and after; the default recipe keeps the "before" half for the next training.
    assert paper["warm"]["phases"]["report_card"]["denoiser_passes"] == 2 * 16 * 2 * 2
    assert default["cold"]["phases"]["report_card"]["denoiser_passes"] == 2 * 16 * 2 * 2
    assert default["warm"]["phases"]["report_card"]["denoiser_passes"] == 16 * 2 * 2
    assert paper["cold"]["phases"]["class_images"]["denoiser_passes"] > 0
    assert paper["warm"]["phases"]["class_images"]["denoiser_passes"] == 0  # the class set was kept
    assert default["cold"]["phases"]["class_images"]["denoiser_passes"] == 0
    assert figures["prior"] == {"paper": "class-images", "default": "output"}
