"""DreamBooth-LoRA training: it learns, its file reproduces it exactly, and prior preservation counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file


def _draw(pipe, seed: int = 11):
    with torch.inference_mode():
        return pipe(
            "a photo of sks dog", num_inference_steps=3, generator=torch.Generator().manual_seed(seed), output_type="np"
        ).images[0]


@pytest.fixture
def fresh_pipe(tiny_model_dir, runtime):
    from engine.base_model import load_base_pipeline

    return load_base_pipeline(tiny_model_dir, runtime)


def test_training_lowers_the_instance_loss_on_a_fixed_batch(trained):
    assert trained["loss_after"] < trained["loss_before"] * 0.97, (trained["loss_before"], trained["loss_after"])


def test_training_writes_lora_kohya_copy_and_samples(trained):
    result = trained["result"]
    assert result.weights_path.name == "lora.safetensors" and result.weights_path.is_file()
    assert result.kohya_path.is_file()
    assert [p.name for p in result.sample_paths] == ["sample_7.png"]
    assert result.steps == 12 and result.resumed_from == 0
    kohya = load_file(str(result.kohya_path))
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0") and k.endswith(".lora_down.weight") for k in kohya)
    assert all(float(v) == 4.0 for k, v in kohya.items() if k.endswith(".alpha"))


def test_saved_lora_reloads_into_a_fresh_pipeline_bit_for_bit(trained, fresh_pipe):
    base = _draw(fresh_pipe)
    assert not np.array_equal(base, trained["image"]), "training changed nothing visible"
    fresh_pipe.load_lora_weights(str(trained["result"].weights_path), adapter_name="mine")
    assert np.array_equal(_draw(fresh_pipe), trained["image"])


def test_unloading_the_lora_restores_the_base_image(trained, fresh_pipe):
    base = _draw(fresh_pipe)
    fresh_pipe.load_lora_weights(str(trained["result"].weights_path), adapter_name="mine")
    assert not np.array_equal(_draw(fresh_pipe), base)
    fresh_pipe.unload_lora_weights()
    assert np.array_equal(_draw(fresh_pipe), base)


def test_kohya_copy_draws_the_same_picture(trained, fresh_pipe):
    fresh_pipe.load_lora_weights(str(trained["result"].kohya_path), adapter_name="kohya")
    np.testing.assert_allclose(_draw(fresh_pipe), trained["image"], atol=1e-5)


def test_prior_loss_weight_is_part_of_the_loss(pipe, runtime, photos, make_spec, tmp_path):
    from engine.training import train

    seen: dict[float, list[dict]] = {0.0: [], 4.0: []}
    weights = {}
    for weight in seen:
        spec = make_spec(tmp_path / str(weight), photos, steps=4, prior_loss_weight=weight, class_image_dir=tmp_path / "class")
        result = train(spec, seen[weight].append, pipe=pipe, runtime=runtime)
        weights[weight] = load_file(str(result.weights_path))
    for weight, reports in seen.items():
        steps = [r for r in reports if r["stage"] == "training"]
        assert len(steps) == 4
        for r in steps:
            assert r["class_loss"] is not None
            assert r["loss"] == pytest.approx(r["instance_loss"] + weight * r["class_loss"], rel=1e-4, abs=1e-6)
    # Same photos, seeds and batches: only the weight differs, so the learnt LoRAs must differ.
    assert any(not torch.equal(weights[0.0][k], weights[4.0][k]) for k in weights[0.0])


def test_stopped_training_resumes_from_its_checkpoint_to_the_same_weights(pipe, runtime, photos, make_spec, tmp_path):
    from engine.training import TrainingStopped, train

    straight = train(make_spec(tmp_path / "straight", photos, steps=8, class_image_dir=tmp_path / "class"), pipe=pipe, runtime=runtime)

    spec = make_spec(tmp_path / "stopped", photos, steps=8, class_image_dir=tmp_path / "class", checkpoint_every=100)
    progress: list[dict] = []
    with pytest.raises(TrainingStopped) as stopped:
        train(spec, progress.append, lambda: sum(p["stage"] == "training" for p in progress) >= 3, pipe=pipe, runtime=runtime)
    assert stopped.value.step == 3
    resumed = train(spec, pipe=pipe, runtime=runtime)
    assert resumed.resumed_from == 3 and resumed.steps == 8
    a, b = load_file(str(straight.weights_path)), load_file(str(resumed.weights_path))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_steps_follow_the_photo_count():
    from engine.training import default_steps

    assert default_steps(3) == 300
    assert default_steps(5) == 500
    assert default_steps(20) == 1500


def test_text_encoder_lora_is_saved_with_the_unet_lora_and_reloads_exactly(pipe, runtime, photos, make_spec, tmp_path, fresh_pipe):
    from engine.training import train

    spec = make_spec(tmp_path, photos, steps=3, train_text_encoder=True)
    result = train(spec, pipe=pipe, runtime=runtime)
    trained_image = _draw(pipe)
    keys = load_file(str(result.weights_path)).keys()
    assert any(k.startswith("text_encoder.") for k in keys) and any(k.startswith("unet.") for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0") for k in load_file(str(result.kohya_path)))
    fresh_pipe.load_lora_weights(str(result.weights_path), adapter_name="with_te")
    assert np.array_equal(_draw(fresh_pipe), trained_image)
    fresh_pipe.unload_lora_weights()
    fresh_pipe.load_lora_weights(str(result.kohya_path), adapter_name="with_te_kohya")
    np.testing.assert_allclose(_draw(fresh_pipe), trained_image, atol=1e-5)
