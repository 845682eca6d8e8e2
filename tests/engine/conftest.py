"""Fixtures for the engine tests: the shared tiny model (tests/conftest.py) loaded once, and quick specs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import photo_image


@pytest.fixture(scope="session")
def runtime():
    import torch

    from engine.base_model import pick_runtime

    torch.set_num_threads(1)

    return pick_runtime("cpu")


@pytest.fixture(scope="session")
def session_pipe(tiny_model_dir, runtime):
    from engine.base_model import load_base_pipeline

    return load_base_pipeline(tiny_model_dir, runtime)


@pytest.fixture
def pipe(session_pipe):
    """The shared base pipeline, with every LoRA taken out again after the test."""
    from engine.training import remove_lora

    remove_lora(session_pipe)
    yield session_pipe
    remove_lora(session_pipe)


@pytest.fixture(scope="session")
def make_photo():
    return _small_photo


@pytest.fixture(scope="session")
def make_spec():
    return quick_spec


def _small_photo(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    return photo_image(seed, size)


@pytest.fixture(scope="session")
def photos() -> list[Image.Image]:
    return [photo_image(seed, (64, 64)) for seed in (1, 2, 3)]


def quick_spec(tmp: Path, photos, **overrides):
    from engine.training import TrainSpec

    values = dict(
        photos=photos, class_word="dog", token="sks", output_dir=tmp / "out", class_image_dir=tmp / "class",
        prior="class-images", num_class_images=2, checkpoint_dir=tmp / "ckpt", steps=12, learning_rate=2e-3, checkpoint_every=5,
        sample_seeds=(7,), sample_steps=3, class_image_steps=3, seed=5,
    )
    values.update(overrides)
    return TrainSpec(**values)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, session_pipe, runtime, photos):
    """One short training on the shared pipeline; also the image the trained pipeline draws at seed 11."""
    import torch

    from engine.training import evaluation_loss, remove_lora, train

    remove_lora(session_pipe)
    tmp = tmp_path_factory.mktemp("trained")
    spec = quick_spec(tmp, photos)
    loss_before = evaluation_loss(session_pipe, spec, runtime)
    result = train(spec, pipe=session_pipe, runtime=runtime)
    loss_after = evaluation_loss(session_pipe, spec, runtime)
    with torch.inference_mode():
        image = session_pipe(
            "a photo of sks dog", num_inference_steps=3, generator=torch.Generator().manual_seed(11), output_type="np"
        ).images[0]
    remove_lora(session_pipe)
    return {"spec": spec, "result": result, "loss_before": loss_before, "loss_after": loss_after, "image": image}


# --- the other families' tiny models: each built once per run, on first use --------------------------------------


@pytest.fixture(scope="session")
def family_pipe(tiny_family_dir, runtime):
    """`family_pipe("flux")` → that family's tiny base pipeline, loaded once, every LoRA taken out first."""
    loaded: dict[str, object] = {}

    def get(name: str):
        from engine.base_model import load_base_pipeline
        from engine.training import remove_lora

        if name not in loaded:
            loaded[name] = load_base_pipeline(tiny_family_dir(name), runtime)
        remove_lora(loaded[name])
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def tiny_sd2_dir(tiny_family_dir) -> Path:
    return tiny_family_dir("sd2")


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tiny_family_dir) -> Path:
    return tiny_family_dir("sdxl")


@pytest.fixture(scope="session")
def tiny_flux_dir(tiny_family_dir) -> Path:
    return tiny_family_dir("flux")


@pytest.fixture(scope="session")
def tiny_flux_schnell_dir(tiny_family_dir) -> Path:
    return tiny_family_dir("flux-schnell")


@pytest.fixture(scope="session")
def random_lora(tmp_path_factory, tiny_model_dir, runtime):
    """A second, unrelated LoRA: random non-zero weights on the same attention layers, saved like a trained one."""
    import torch
    from peft import LoraConfig

    from engine import lora_files
    from engine.base_model import load_base_pipeline

    pipe = load_base_pipeline(tiny_model_dir, runtime)
    torch.manual_seed(3)
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=lora_files.UNET_TARGETS),
        adapter_name=lora_files.ADAPTER,
    )
    target = tmp_path_factory.mktemp("random_lora") / "lora.safetensors"
    return lora_files.save_diffusers_lora(target, pipe.unet)
