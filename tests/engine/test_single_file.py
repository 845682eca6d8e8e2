"""BASE_MODEL may be one original-layout `.safetensors` checkpoint (as A1111 users have), read fully offline."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.engine.ldm_checkpoint import write_ldm_checkpoint


@pytest.fixture(scope="module")
def single_file(tmp_path_factory, tiny_model_dir, runtime):
    from engine.base_model import load_base_pipeline

    folder = tmp_path_factory.mktemp("single")
    checkpoint = write_ldm_checkpoint(load_base_pipeline(tiny_model_dir, runtime), folder / "tiny.safetensors")
    # Its configs and tokenizer beside it, as the docs ask (checkpoints carry no tokenizer).
    shutil.copytree(tiny_model_dir, folder / "tiny", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return checkpoint


def test_a_single_file_checkpoint_loads_to_the_same_weights_and_draws_the_same_picture(single_file, tiny_model_dir,
                                                                                       runtime):
    import torch

    from engine.base_model import load_base_pipeline
    from engine.drawing import Drawer, DrawRequest

    from_folder = load_base_pipeline(tiny_model_dir, runtime)
    from_file = load_base_pipeline(single_file, runtime)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(from_folder, name).state_dict(), getattr(from_file, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k].reshape(a[k].shape)) for k in a), name
    request = DrawRequest("a photo of dog", n=1, steps=3, seeds=[9])
    first = np.asarray(Drawer(from_folder, runtime).draw(request).images[0])
    second = np.asarray(Drawer(from_file, runtime).draw(request).images[0])
    assert np.array_equal(first, second)


def test_a_single_file_without_its_configs_gets_a_clear_message(tmp_path, single_file):
    from engine.base_model import BaseModelError, load_base_pipeline, pick_runtime

    lonely = tmp_path / "lonely.safetensors"
    shutil.copyfile(single_file, lonely)
    with pytest.raises(BaseModelError, match="tokenizer"):
        load_base_pipeline(lonely, pick_runtime("cpu"))


@pytest.mark.parametrize("name", ["sd1-clip", "sd2", "sdxl"])
def test_a_lone_single_file_of_each_family_loads_with_no_extra_files(name, tmp_path, tiny_family_dir, runtime):
    """Like an A1111/Civitai download: one .safetensors, no configs, no tokenizer beside it."""
    import torch

    from engine.base_model import load_base_pipeline
    from engine.detection import family_of
    from engine.drawing import Drawer, DrawRequest

    from_folder = load_base_pipeline(tiny_family_dir(name), runtime)
    checkpoint = write_ldm_checkpoint(from_folder, tmp_path / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    from_file = load_base_pipeline(checkpoint, runtime)
    assert family_of(from_file) is family_of(from_folder)
    assert from_file.scheduler.config.prediction_type == from_folder.scheduler.config.prediction_type
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(from_folder, part, None) is None:
            continue
        a, b = getattr(from_folder, part).state_dict(), getattr(from_file, part).state_dict()
        assert a.keys() == b.keys(), part
        assert all(torch.equal(a[k], b[k].reshape(a[k].shape)) for k in a), part
    request = DrawRequest("a photo of sks dog", n=1, steps=2, seeds=[9])
    first = np.asarray(Drawer(from_folder, runtime).draw(request).images[0])
    second = np.asarray(Drawer(from_file, runtime).draw(request).images[0])
    assert np.array_equal(first, second)


def test_an_sd2_single_file_that_says_epsilon_loads_as_the_512_base_model(tmp_path, tiny_family_dir, runtime):
    from engine.base_model import load_base_pipeline
    from engine.detection import family_of

    pipe = load_base_pipeline(tiny_family_dir("sd2"), runtime)
    checkpoint = write_ldm_checkpoint(pipe, tmp_path / "sd21-base.safetensors",
                                      metadata={"modelspec.prediction_type": "epsilon"})
    loaded = load_base_pipeline(checkpoint, runtime)
    assert family_of(loaded).name == "sd2" and loaded.scheduler.config.prediction_type == "epsilon"
