"""The command line without Telegram: train from a folder of photos, then draw PNGs with the LoRA."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_train_then_draw_from_the_command_line(tmp_path, tiny_model_dir, make_photo):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        make_photo(seed, (120, 90)).save(photos / f"p{seed}.jpg", quality=95)
    make_photo(0, (120, 90)).save(photos / "z-p0-again.png")
    (photos / "notes.jpg").write_bytes(b"not a picture")
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), BASE_MODEL=str(tiny_model_dir), DEVICE="cpu",
               NUM_CLASS_IMAGES="2", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("TRAIN_STEPS", None)

    trained = _run(["train", "--photos", "photos", "--class", "dog", "--out", "out", "--steps", "4"], tmp_path, env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "skipped notes.jpg: undecodable" in trained.stderr
    assert "skipped z-p0-again.png: near_duplicate" in trained.stderr
    assert re.search(r"training: 100%\|[^\n]*\| 4/4", trained.stderr), trained.stderr[-2000:]  # the bar ends full
    assert "a photo of sks dog" in trained.stdout
    assert (tmp_path / "out" / "lora.safetensors").is_file()
    assert (tmp_path / "out" / "lora_kohya.safetensors").is_file()
    assert len(list((tmp_path / "out").glob("sample_*.png"))) == 4

    drawn = _run(["draw", "--lora", "out/lora.safetensors", "--out", "pics", "--n", "2", "--seed", "42", "--steps", "3",
                  "a photo of sks dog in paris"], tmp_path, env)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    files = sorted((tmp_path / "pics").glob("*.png"))
    assert [f.name for f in files] == ["seed_42.png", "seed_43.png"]
    assert Image.open(files[0]).size == (64, 64)


def test_worker_without_base_model_says_what_to_set(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    env.pop("BASE_MODEL", None)
    result = _run(["--once"], tmp_path, env)
    assert result.returncode == 2
    assert "BASE_MODEL" in result.stderr


def test_random_model_writes_a_loadable_pipeline_shaped_by_a_config_folder(tmp_path, tiny_model_dir):
    """The GPU benchmarks' SD1.5-shaped model, checked here on the tiny model's configs (SD1.5 is 2 GB)."""
    import json

    from diffusers import StableDiffusionPipeline

    out = tmp_path / "random"
    done = subprocess.run([sys.executable, "-m", "engine", "random-model", "--config", str(tiny_model_dir), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pipe = StableDiffusionPipeline.from_pretrained(str(out), local_files_only=True)
    want = json.loads((tiny_model_dir / "unet" / "config.json").read_text())
    assert list(pipe.unet.config.block_out_channels) == want["block_out_channels"]
    assert "random parameters" in done.stdout


def test_tiny_model_of_a_family_then_draw_with_aspect_ratio_and_sampler(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DEVICE="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("DRAW_STEPS", None)
    built = _run(["tiny-model", "flux", "--family", "flux"], tmp_path, env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "FluxPipeline" in built.stdout and "noise" in built.stdout
    drawn = _run(["draw", "--base-model", "flux", "--out", "pics", "--n", "1", "--seed", "4", "--steps", "2",
                  "--ar", "3:2", "--sampler", "euler", "--strength", "0.5", "a photo of sks dog"], tmp_path, env)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert "flux-dev: 72x48, 2 steps, euler, guidance 3.5" in drawn.stderr
    assert Image.open(tmp_path / "pics" / "seed_4.png").size == (72, 48)


def test_tiny_model_of_qwen_image_then_draw_with_its_true_cfg_and_a_negative_prompt(tmp_path):
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DEVICE="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("DRAW_STEPS", None)
    built = _run(["tiny-model", "qwen", "--family", "qwen-image"], tmp_path, env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "QwenImagePipeline" in built.stdout
    drawn = _run(["draw", "--base-model", "qwen", "--out", "pics", "--n", "1", "--seed", "4", "--steps", "2",
                  "--ar", "3:2", "--negative", "blurry", "a photo of sks dog"], tmp_path, env)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert "qwen-image: 72x48, 2 steps, default, guidance 4.0" in drawn.stderr
    assert Image.open(tmp_path / "pics" / "seed_4.png").size == (72, 48)


@pytest.mark.parametrize(("family", "folder", "pipeline"), [("z-image-turbo", "z-image-turbo", "ZImagePipeline"),
                                                            ("qwen-image", "qwen", "QwenImagePipeline")])
def test_the_qwen_encoded_families_train_then_draw_with_the_lora_from_the_command_line(tmp_path, make_photo, family,
                                                                                       folder, pipeline):
    """FLUX.2 [klein]'s own command-line story is in test_flux2_klein.py."""
    env = dict(os.environ, DATA_DIR=str(tmp_path / "data"), DEVICE="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    for name in ("DRAW_STEPS", "TRAIN_STEPS", "PRIOR"):
        env.pop(name, None)
    built = _run(["tiny-model", folder, "--family", family], tmp_path, env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert pipeline in built.stdout
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        make_photo(seed, (80, 64)).save(photos / f"p{seed}.png")
    trained = _run(["train", "--base-model", folder, "--photos", "photos", "--class", "dog", "--out", "out",
                    "--steps", "3"], tmp_path, env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "a photo of" in trained.stdout and (tmp_path / "out" / "lora.safetensors").is_file()
    drawn = _run(["draw", "--base-model", folder, "--lora", "out/lora.safetensors", "--out", "pics", "--n", "1",
                  "--seed", "2", "--steps", "2", "a photo of sks dog"], tmp_path, env)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    assert Image.open(tmp_path / "pics" / "seed_2.png").size[0] > 0
