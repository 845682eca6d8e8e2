"""Output preservation (Kabina's default prior) on the families whose step lives in their own module: FLUX.2 [klein],
Z-Image and Qwen-Image split it into noise and prediction, so the class row is held to the frozen model's own
prediction (LoRA off) and no class pictures are drawn (their resumes: tests/engine/test_family_training.py)."""

from __future__ import annotations

import pytest
import torch

SPLIT_FAMILIES = ["flux2-klein", "z-image", "qwen-image"]


@pytest.mark.parametrize("name", SPLIT_FAMILIES)
def test_the_class_row_is_held_to_the_base_models_prediction_with_the_lora_off(name, family_pipe, runtime, photos,
                                                                              make_spec, tmp_path):
    import torch.nn.functional as F

    from engine.objectives import step_batch
    from engine.train_steps import Loop, cache_inputs, denoiser, objective_for, with_class_row
    from engine.training import remove_lora, train_resolution

    pipe = family_pipe(name)
    spec = make_spec(tmp_path, photos, prior="output")
    resolution = train_resolution(pipe, spec)
    prepared, groups = cache_inputs(pipe, spec, resolution, "output", [], [])
    try:
        with torch.no_grad():  # a LoRA that already moved the model, so "base" and "trained" differ
            for group in groups:
                for param in group["params"]:
                    param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)) * 0.5)
        loop = Loop(pipe, spec, runtime, prepared, "output", resolution, None, [], lambda _p: None, None, None,
                    lambda _s: None)
        objective = objective_for(pipe, runtime)
        _, instance_loss, class_loss = loop.step_losses(3, objective)

        batch = with_class_row(step_batch(3, spec.seed, prepared.instance, None, objective.num_timesteps,
                                          objective.family))
        noised = objective.noise(pipe, batch)
        with torch.no_grad():
            denoiser(pipe).disable_adapters()  # peft's own switch: the frozen model as peft defines it
            try:
                frozen = objective.predict(pipe, noised, prepared.base_embeds, rows=slice(1, 2))
            finally:
                denoiser(pipe).enable_adapters()
            trained = objective.predict(pipe, noised, prepared.embeds)[1:2]  # batched as the step runs it
            noise_target = F.mse_loss(trained.float(), noised.target[1:2].float()).item()
        weight = noised.weighting[1:2] if noised.weighting.shape[0] > 1 else noised.weighting
        want = (weight.float() * (trained.float() - frozen.float()) ** 2).mean().item()
        assert class_loss.item() == pytest.approx(want, rel=1e-4)
        assert class_loss.item() > 0  # the LoRA moved it: the frozen base is another model than the trained one
        assert abs(class_loss.item() - noise_target) > 1e-3  # the class row is not held to the noise
        assert torch.equal(batch.latents[0], batch.latents[1])  # the class branch sits on the instance's latents
        assert instance_loss.item() > 0
    finally:
        remove_lora(pipe)


@pytest.mark.parametrize("name", ["flux2-klein", "z-image"])
def test_output_preservation_is_the_default_and_draws_no_class_pictures(name, family_pipe, runtime, photos,
                                                                        make_spec, tmp_path):
    """The class row's loss is zero before the LoRA has learnt anything (lora_B starts at zero: the base's own
    answer), and grows once it has."""
    from engine.detection import family_of
    from engine.training import remove_lora, train

    pipe = family_pipe(name)
    spec = make_spec(tmp_path, photos, prior=None, steps=3, learning_rate=5e-3, sample_seeds=())
    assert spec.prior_method(family_of(pipe)) == "output"
    progress: list[dict] = []
    result = train(spec, progress.append, pipe=pipe, runtime=runtime)
    remove_lora(pipe)
    steps = [p for p in progress if p["stage"] == "training"]
    assert steps[0]["class_loss"] < 1e-6 < steps[-1]["class_loss"]
    assert not any(p["stage"] == "class_images" for p in progress)
    assert not list((tmp_path / "class").glob("*.png")) and result.weights_path.exists()
