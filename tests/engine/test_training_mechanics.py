"""The mechanics a DreamBooth run silently depends on, each checked directly and fast on the tiny SD1 model:
the VAE's latent scale, timesteps over the whole schedule, gradient clipping, resuming only a matching checkpoint,
and the drawer's LoRA cache (a changed file is reloaded, the cache stays bounded)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file


def test_the_unet_learns_on_latents_at_the_vaes_scale(pipe, runtime, photos, monkeypatch):
    """SD's UNet was trained on VAE latents × scaling_factor (0.18215): unscaled latents teach it another world."""
    from engine.detection import family_of
    from engine.objectives import Objective, step_batch
    from engine.training import encode_images

    encoded = encode_images(pipe, photos, 64)
    objective = Objective(family_of(pipe), pipe.scheduler.config, runtime)
    batch = step_batch(3, 5, encoded, None, objective.num_timesteps)
    scale = pipe.vae.config.scaling_factor
    expected = objective.scheduler.add_noise(batch.latents * scale, batch.noise, batch.timesteps)
    seen = {}

    def oracle(sample, timestep, encoder_hidden_states, **kwargs):
        seen["sample"] = sample.detach().clone()
        return type("Out", (), {"sample": torch.zeros_like(sample)})()

    monkeypatch.setattr(pipe.unet, "forward", oracle)
    embeds = {"encoder_hidden_states": torch.zeros(1, 77, pipe.text_encoder.config.hidden_size)}
    objective.per_example(pipe, batch, embeds)
    assert scale != 1.0
    assert torch.allclose(seen["sample"], expected, atol=1e-6)


def test_training_timesteps_cover_the_whole_schedule_evenly(pipe, runtime, photos):
    """DreamBooth trains every noise level: drawing only high (noisy) timesteps would never teach the details."""
    from engine.objectives import step_batch
    from engine.training import encode_images

    encoded = encode_images(pipe, photos, 64)
    drawn = torch.cat([step_batch(step, 5, encoded, encoded, 1000).timesteps for step in range(500)]).float()
    assert drawn.min() < 50 and drawn.max() > 950
    assert abs(float(drawn.mean()) - 499.5) < 40
    low, high = int((drawn < 500).sum()), int((drawn >= 500).sum())
    assert abs(low - high) < 0.15 * len(drawn)


def test_gradients_are_clipped_to_norm_one_whatever_the_loss(pipe, runtime, photos, make_spec, tmp_path):
    """A huge loss (here a prior weight of a million) must not take a huge step: the update is clipped to norm 1."""
    from engine.training import train

    spec = make_spec(tmp_path / "loud", photos, steps=1, prior_loss_weight=1e6, class_image_dir=tmp_path / "class")
    train(spec, pipe=pipe, runtime=runtime)
    grads = [p.grad for name, p in pipe.unet.named_parameters() if "lora_" in name and p.grad is not None]
    assert grads, "the trained adapter kept no gradients to look at"
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    assert norm <= 1.0 + 1e-4, norm


def test_a_checkpoint_of_other_photos_is_not_resumed(pipe, runtime, photos, make_photo, make_spec, tmp_path):
    """The job's checkpoint folder may hold a run of another spec (other photos): it must start afresh then."""
    from engine.training import TrainingStopped, train

    shared = tmp_path / "ckpt"
    progress: list[dict] = []
    first = make_spec(tmp_path / "first", photos, steps=8, checkpoint_dir=shared, class_image_dir=tmp_path / "class")
    with pytest.raises(TrainingStopped):
        train(first, progress.append, lambda: sum(p["stage"] == "training" for p in progress) >= 4,
              pipe=pipe, runtime=runtime)
    others = [make_photo(seed) for seed in (11, 12, 13)]
    second = make_spec(tmp_path / "second", others, steps=8, checkpoint_dir=shared, class_image_dir=tmp_path / "class")
    resumed = train(second, pipe=pipe, runtime=runtime)
    assert resumed.resumed_from == 0
    fresh = train(make_spec(tmp_path / "fresh", others, steps=8, checkpoint_dir=tmp_path / "none",
                            class_image_dir=tmp_path / "class"), pipe=pipe, runtime=runtime)
    a, b = load_file(str(resumed.weights_path)), load_file(str(fresh.weights_path))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def drawer(pipe, runtime):
    from engine.drawing import Drawer

    d = Drawer(pipe, runtime, cache_size=2)
    yield d
    d.forget_loras()


def _picture(drawer, lora) -> np.ndarray:
    from engine.drawing import DrawRequest

    result = drawer.draw(DrawRequest("a photo of sks dog", n=1, steps=2, seeds=[5], lora=lora))
    return np.asarray(result.images[0])


def test_a_retrained_lora_file_is_read_again_not_served_from_the_cache(drawer, trained, random_lora, tmp_path):
    """A model retrained in place keeps its path; the drawer must notice the file changed."""
    path = tmp_path / "model" / "lora.safetensors"
    path.parent.mkdir()
    shutil.copyfile(trained["result"].weights_path, path)
    before = _picture(drawer, path)
    shutil.copyfile(random_lora, path)
    assert not np.array_equal(_picture(drawer, path), before)
    assert np.array_equal(_picture(drawer, path), _picture(drawer, random_lora))


def test_the_lora_cache_holds_at_most_its_size(drawer, trained, random_lora, tmp_path, pipe):
    paths = []
    for index, source in enumerate((trained["result"].weights_path, random_lora, trained["result"].weights_path)):
        target = tmp_path / f"m{index}" / "lora.safetensors"
        target.parent.mkdir()
        shutil.copyfile(source, target)
        paths.append(target)
    for path in paths:
        _picture(drawer, path)
    loaded = [name for name in (getattr(pipe.unet, "peft_config", None) or {}) if name.startswith("lora")]
    assert len(loaded) <= drawer.cache_size, loaded
    assert np.array_equal(_picture(drawer, paths[0]), _picture(drawer, paths[2]))  # evicted, then loaded again
