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


# --- FLUX.1: BFL's transformer file + a diffusers folder of the other components ------------------------------------

FLUX_FILES = {"flux": "flux1-dev", "flux-schnell": "flux1-schnell"}


@pytest.fixture(scope="module")
def flux_single_file(tmp_path_factory, tiny_family_dir):
    """`flux_single_file("flux")` → flux1-dev.safetensors (BFL's layout) with flux1-dev/ beside it: the tiny folder
    model's own weights. dev's folder keeps transformer/config.json; schnell's has no transformer/ at all, so its
    config is our template fitted to the file."""
    from engine.flux_single_file import split_flux_folder

    made = {}

    def get(name: str):
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            components = root / FLUX_FILES[name]
            shutil.copytree(tiny_family_dir(name), components)
            made[name] = split_flux_folder(components, root / f"{FLUX_FILES[name]}.safetensors")
            if name == "flux-schnell":
                shutil.rmtree(components / "transformer")
        return made[name]

    return get


def _probe_state(width_config: dict):
    """A FLUX.1 transformer's diffusers names at full width, every tensor one column of distinct numbers."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**width_config)
    state, start = {}, 0
    for name, tensor in model.state_dict().items():
        rows = tensor.shape[0]
        state[name] = torch.arange(start, start + rows, dtype=torch.float64).reshape(rows, *([1] * (tensor.dim() > 1)))
        start += rows
    return state


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_our_bfl_names_are_the_ones_diffusers_converts_from_at_flux1_width(guidance):
    """At FLUX.1's real width (3072, where diffusers' converter works) both directions agree with diffusers."""
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from engine.flux_single_file import bfl_state_from_diffusers, diffusers_state_from_bfl

    probe = _probe_state(dict(num_layers=2, num_single_layers=2, guidance_embeds=guidance))
    bfl = bfl_state_from_diffusers(probe)
    assert "double_blocks.1.img_attn.qkv.weight" in bfl and "single_blocks.1.linear1.bias" in bfl
    assert ("guidance_in.in_layer.weight" in bfl) is guidance
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    ours = diffusers_state_from_bfl(bfl)
    for converted in (theirs, ours):
        assert converted.keys() == probe.keys()
        assert all(torch.equal(converted[k], probe[k]) for k in probe)
    comfy = diffusers_state_from_bfl({"model.diffusion_model." + k: v for k, v in bfl.items()})
    assert all(torch.equal(comfy[k], probe[k]) for k in probe)


def test_the_tiny_flux1_transformer_survives_bfls_layout_bit_for_bit(family_pipe):
    import torch
    from diffusers import FluxTransformer2DModel

    from engine.flux_single_file import bfl_state_from_diffusers, diffusers_state_from_bfl

    original = family_pipe("flux").transformer.state_dict()
    bfl = bfl_state_from_diffusers(original)
    assert not any(k.startswith(("transformer_blocks", "single_transformer_blocks")) for k in bfl)
    back = diffusers_state_from_bfl(bfl)
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in original)
    loaded = FluxTransformer2DModel.from_single_file(back, config=str(family_pipe("flux").transformer.config
                                                                      ["_name_or_path"]), local_files_only=True)
    assert all(torch.equal(loaded.state_dict()[k], original[k]) for k in original)


@pytest.mark.parametrize("name", ["flux", "flux-schnell"])
def test_a_flux1_single_file_with_its_components_folder_draws_the_folder_models_picture(name, flux_single_file,
                                                                                        family_pipe, runtime):
    import torch

    from engine.base_model import load_base_pipeline
    from engine.detection import family_of
    from engine.drawing import Drawer, DrawRequest

    from_folder = family_pipe(name)
    from_file = load_base_pipeline(flux_single_file(name), runtime)
    assert family_of(from_file) is family_of(from_folder)
    assert from_file.scheduler.config == from_folder.scheduler.config
    mine, theirs = from_file.transformer.config, from_folder.transformer.config
    assert {k: mine[k] for k in theirs if not k.startswith("_")} == {k: theirs[k] for k in theirs
                                                                     if not k.startswith("_")}
    for part in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(from_folder, part).state_dict(), getattr(from_file, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    request = DrawRequest("a photo of sks dog", n=1, steps=2, seeds=[9])
    first = np.asarray(Drawer(from_folder, runtime).draw(request).images[0])
    second = np.asarray(Drawer(from_file, runtime).draw(request).images[0])
    assert np.array_equal(first, second)


def test_a_flux1_single_file_trains_the_same_lora_as_its_folder_model(flux_single_file, family_pipe, runtime, photos,
                                                                       make_spec, tmp_path):
    import torch
    from safetensors.torch import load_file

    from engine.base_model import load_base_pipeline
    from engine.training import train

    loras = []
    for label, pipe in (("folder", family_pipe("flux")), ("file", load_base_pipeline(flux_single_file("flux"),
                                                                                       runtime))):
        spec = make_spec(tmp_path / label, photos, steps=2, num_class_images=0, sample_seeds=(), checkpoint_every=0)
        result = train(spec, pipe=pipe, runtime=runtime)
        assert result.steps == 2 and result.final_loss is not None
        loras.append(load_file(str(result.weights_path)))
    folder, file = loras
    assert folder.keys() == file.keys() and all(torch.equal(folder[k], file[k]) for k in folder)


def test_a_dev_file_beside_a_schnell_folder_samples_as_dev(flux_single_file, tmp_path, runtime):
    from engine.base_model import load_base_pipeline

    shutil.copyfile(flux_single_file("flux"), tmp_path / "flux1-dev.safetensors")
    shutil.copytree(flux_single_file("flux-schnell").with_suffix(""), tmp_path / "flux1-dev")
    pipe = load_base_pipeline(tmp_path / "flux1-dev.safetensors", runtime)
    assert pipe.transformer.config.guidance_embeds and pipe.scheduler.config.use_dynamic_shifting


def test_a_flux1_single_file_without_its_components_is_refused_in_one_line_saying_what_goes_where(
        flux_single_file, tmp_path):
    from engine.base_model import BaseModelError, base_model_key, load_base_pipeline, pick_runtime

    lonely = tmp_path / "flux1-dev.safetensors"
    shutil.copyfile(flux_single_file("flux"), lonely)
    for attempt in (lambda: load_base_pipeline(lonely, pick_runtime("cpu")), lambda: base_model_key(lonely)):
        with pytest.raises(BaseModelError) as refused:
            attempt()
        message = str(refused.value)
        assert "\n" not in message
        assert str(tmp_path / "flux1-dev") in message and "text_encoder_2" in message and "vae" in message
    (tmp_path / "flux1-dev").mkdir()
    shutil.copyfile(flux_single_file("flux").with_suffix("") / "model_index.json",
                    tmp_path / "flux1-dev" / "model_index.json")
    with pytest.raises(BaseModelError, match="flux1-dev/ lacks text_encoder, text_encoder_2"):
        base_model_key(lonely)


def test_a_flux1_single_files_cache_key_covers_its_components_folder(flux_single_file, tmp_path):
    import json

    from engine.base_model import base_model_key

    checkpoint = flux_single_file("flux")
    key = base_model_key(checkpoint)
    moved = tmp_path / "elsewhere" / "flux1-dev.safetensors"
    moved.parent.mkdir()
    shutil.copyfile(checkpoint, moved)
    shutil.copytree(checkpoint.with_suffix(""), moved.with_suffix(""))
    assert base_model_key(moved) == key
    scheduler = moved.with_suffix("") / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps(dict(json.loads(scheduler.read_text()), shift=2.0)))
    assert base_model_key(moved) != key
    shutil.copytree(checkpoint.with_suffix(""), moved.with_suffix(""), dirs_exist_ok=True)
    assert base_model_key(moved) == key
    vae = moved.with_suffix("") / "vae" / "diffusion_pytorch_model.safetensors"
    vae.write_bytes(vae.read_bytes()[:-4] + b"\0\0\0\1")
    assert base_model_key(moved) != key
