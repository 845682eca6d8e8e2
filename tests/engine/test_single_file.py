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
