"""Base-model families: each is recognised at start, anything else is refused in one line, limits are plain data."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from engine.families import ASPECT_RATIOS, FAMILIES, FAMILY_LIMITS, SD1, SDXL, get_family, size_for_aspect

REPO = Path(__file__).resolve().parents[2]


def _fake_safetensors(path: Path, names: list[str], metadata: dict[str, str] | None = None) -> Path:
    """A .safetensors file with one-element tensors under `names` (shapes only matter to detection by name)."""
    header: dict = {name: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, name in enumerate(names)}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * len(names)))
    return path


@pytest.mark.parametrize(("cli", "family"), [("sd2", "sd2-v"), ("sdxl", "sdxl"), ("flux", "flux-dev"),
                                             ("flux-schnell", "flux-schnell"), ("flux2-klein", "flux2-klein"), ("z-image", "z-image"),
                                             ("qwen-image", "qwen-image")])
def test_each_tiny_family_folder_is_detected_and_loads_as_its_pipeline(cli, family, tiny_family_dir, family_pipe):
    from engine.detection import detect, family_of

    assert detect(tiny_family_dir(cli)).family.name == family
    pipe = family_pipe(cli)
    assert family_of(pipe).name == family
    assert type(pipe).__name__ == FAMILIES[family].pipeline


def test_the_sd1_folder_is_sd1_and_its_pipeline_says_so(session_pipe, tiny_model_dir):
    from engine.detection import detect, family_of

    assert detect(tiny_model_dir).family is SD1
    assert family_of(session_pipe) is SD1
    assert session_pipe._kabina_family == "sd1"


def test_an_sd2_folder_is_told_apart_from_sd1_and_its_variant_from_the_scheduler(tmp_path, tiny_sd2_dir):
    import shutil

    from engine.detection import detect

    assert detect(tiny_sd2_dir).family.name == "sd2-v"
    base = tmp_path / "sd2-base"
    shutil.copytree(tiny_sd2_dir, base, ignore=shutil.ignore_patterns("*.safetensors"))
    config = base / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "epsilon"}))
    assert detect(base).family.name == "sd2"


@pytest.mark.parametrize(("class_name", "said"), [("StableDiffusion3Pipeline", "Stable Diffusion 3"),
                                                  ("StableDiffusionXLImg2ImgPipeline", "the SDXL refiner"),
                                                  ("KandinskyPipeline", "a KandinskyPipeline")])
def test_an_unsupported_folder_is_refused_at_load_in_one_line_naming_what_it_is(tmp_path, runtime, class_name, said):
    from engine.base_model import UnsupportedModel, load_base_pipeline

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    with pytest.raises(UnsupportedModel) as refused:
        load_base_pipeline(tmp_path, runtime)
    message = str(refused.value)
    assert "\n" not in message and said in message
    assert "SD1.x" in message and "SDXL" in message and "FLUX.1-dev" in message


@pytest.mark.parametrize(
    ("names", "metadata", "family"),
    [
        (["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"], None, "sd1"),
        (["cond_stage_model.model.token_embedding.weight"], None, "sd2-v"),
        (["cond_stage_model.model.token_embedding.weight"], {"modelspec.prediction_type": "epsilon"}, "sd2"),
        (["cond_stage_model.model.token_embedding.weight"], {"modelspec.architecture": "stable-diffusion-v2-512"}, "sd2"),
        (["conditioner.embedders.0.transformer.text_model.x", "conditioner.embedders.1.model.x"], None, "sdxl"),
        (["double_blocks.0.img_attn.qkv.weight", "guidance_in.in_layer.weight"], None, "flux-dev"),
        (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"], None, "flux-schnell"),
    ],
)
def test_single_files_are_recognised_by_their_tensor_names(tmp_path, names, metadata, family):
    from engine.detection import detect

    assert detect(_fake_safetensors(tmp_path / "m.safetensors", names, metadata)).family.name == family


@pytest.mark.parametrize(("names", "said"), [(["joint_blocks.0.x"], "Stable Diffusion 3"),
                                             (["conditioner.embedders.0.model.x"], "the SDXL refiner"),
                                             (["model.diffusion_model.input_blocks.0.0.weight"], "a UNet without"),
                                             (["something.else"], "not a Stable Diffusion")])
def test_an_unsupported_single_file_is_refused_in_one_line(tmp_path, runtime, names, said):
    from engine.base_model import UnsupportedModel, load_base_pipeline

    with pytest.raises(UnsupportedModel, match=said):
        load_base_pipeline(_fake_safetensors(tmp_path / "m.safetensors", names), runtime)


def test_a_flux_single_file_without_its_components_folder_is_refused_naming_the_folder(tmp_path, runtime):
    from engine.base_model import BaseModelError, load_base_pipeline

    path = _fake_safetensors(tmp_path / "flux1-dev.safetensors", ["double_blocks.0.x", "guidance_in.in_layer.weight"])
    with pytest.raises(BaseModelError, match=f"diffusers FLUX.1 folder .* beside it as {tmp_path / 'flux1-dev'},"):
        load_base_pipeline(path, runtime)


@pytest.mark.parametrize(("aspect", "size"), [("1:1", (1024, 1024)), ("3:2", (1216, 832)), ("2:3", (832, 1216)),
                                              ("16:9", (1344, 768)), ("9:16", (768, 1344))])
def test_sdxl_aspect_ratios_give_its_official_buckets(aspect, size):
    assert size_for_aspect(SDXL, aspect) == size


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("aspect", ASPECT_RATIOS)
def test_every_aspect_size_is_on_the_grid_within_the_budget_and_the_right_way_round(name, aspect):
    family = get_family(name)
    width, height = size_for_aspect(family, aspect)
    assert width % family.multiple == 0 and height % family.multiple == 0
    assert width * height <= family.pixel_budget
    assert width * height >= 0.7 * family.pixel_budget  # not a postage stamp either
    w, h = (int(x) for x in aspect.split(":"))
    assert (width > height) == (w > h) and (width == height) == (w == h)
    assert abs(width / height - w / h) / (w / h) < 0.06


def test_an_aspect_ratio_that_is_not_one_is_a_clear_error():
    with pytest.raises(ValueError, match="3:2"):
        size_for_aspect(SD1, "wide")


def test_the_limits_are_plain_data_with_each_familys_defaults():
    json.dumps(FAMILY_LIMITS)
    assert FAMILY_LIMITS["sdxl"]["resolution"] == 1024 and FAMILY_LIMITS["sd2-v"]["resolution"] == 768
    assert (FAMILY_LIMITS["flux-dev"]["default_steps"], FAMILY_LIMITS["flux-dev"]["default_guidance"]) == (28, 3.5)
    assert (FAMILY_LIMITS["flux-schnell"]["default_steps"], FAMILY_LIMITS["flux-schnell"]["default_guidance"]) == (4, 0.0)
    assert FAMILY_LIMITS["flux-schnell"]["prompt_tokens"] == 255 and FAMILY_LIMITS["flux-dev"]["prompt_tokens"] == 511
    assert FAMILY_LIMITS["sd1"]["default_sampler"] == "dpm++2m-karras"
    assert {"dpm++2m-karras", "euler-a", "euler", "ddim", "default"} <= set(FAMILY_LIMITS["sd1"]["samplers"])
    assert "euler-a" not in FAMILY_LIMITS["flux-dev"]["samplers"] and not FAMILY_LIMITS["flux-dev"]["negative_prompt"]
    assert FAMILY_LIMITS["sdxl"]["sizes"]["16:9"] == [1344, 768]


def test_families_and_their_limits_import_without_torch():
    code = "import sys, engine.families, engine.detection; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_familys_grid_is_a_multiple_of_what_its_full_size_model_needs(name):
    """The shipped full-size configs' structure: VAE factor × UNet downsamplings (FLUX: × 2 for packing)."""
    from engine.single_file import TEMPLATES

    family = get_family(name)
    folder = REPO / "engine" / "configs" / TEMPLATES[name]
    vae = json.loads((folder / "vae" / "config.json").read_text())
    if "temperal_downsample" in vae:  # Qwen-Image's 3D VAE: one spatial halving per level, no native size recorded
        factor = 2 ** len(vae["temperal_downsample"])
        assert "sample_size" not in vae
    else:
        factor = 2 ** (len(vae["block_out_channels"]) - 1)
    if family.is_flux:
        need = factor * 2
        assert vae.get("sample_size", family.resolution) == family.resolution
    else:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        need = factor * 2 ** (len(unet["block_out_channels"]) - 1)
        assert unet["sample_size"] * factor == family.resolution
    assert family.multiple % need == 0, (family.multiple, need)
