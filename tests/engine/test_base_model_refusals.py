"""Every way of starting the engine on a base model it cannot serve ends in one line on stderr and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

COMMANDS = {
    "worker": ["--once"],
    "train": ["train", "--photos", "photos", "--class", "dog", "--out", "out", "--steps", "1"],
    "draw": ["draw", "--out", "pics", "a photo of a dog"],
    "bench": ["bench", "--base-model", "{model}", "--steps", "1"],
}


def _engine(args: list[str], cwd: Path, base_model: Path | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATA_DIR=str(cwd / "data"), DEVICE="cpu", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    env.pop("BASE_MODEL", None)
    if base_model is not None:
        env["BASE_MODEL"] = str(base_model)
    args = [a.replace("{model}", str(base_model)) for a in args]
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def _folder(tmp_path: Path, class_name: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    (tmp_path / "photos").mkdir()
    return folder


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flux2_dev_is_refused_in_one_line_naming_what_fits_instead(tmp_path, command):
    done = _engine(COMMANDS[command], tmp_path, _folder(tmp_path, "Flux2Pipeline"))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "FLUX.2 [dev]" in lines[0] and "FLUX.2 [klein]" in lines[0]


def test_an_unsupported_family_is_refused_by_the_worker_in_one_line_naming_the_supported_ones(tmp_path):
    done = _engine(["--once"], tmp_path, _folder(tmp_path, "StableDiffusion3Pipeline"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "Stable Diffusion 3" in line
    for family in ("SD1.x", "SDXL", "FLUX.1-dev", "FLUX.2 [klein]"):
        assert family in line


def test_a_missing_base_model_names_every_family_not_only_sd1(tmp_path):
    done = _engine(["--once"], tmp_path, tmp_path / "nowhere")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "does not exist" in line and "SDXL" in line and "FLUX.2 [klein]" in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_flux1_transformer_file_without_its_components_is_refused_in_one_line_naming_the_folder(tmp_path, command):
    """BFL's flux1-dev.safetensors alone (the transformer only): every command says which folder to put beside it."""
    import numpy as np
    from safetensors.numpy import save_file

    checkpoint = tmp_path / "flux1-dev.safetensors"
    save_file({name: np.zeros((4, 4), dtype=np.float32) for name in
               ("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.weight")},
              str(checkpoint))
    (tmp_path / "photos").mkdir()
    done = _engine(COMMANDS[command], tmp_path, checkpoint)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "FLUX.1-dev single file" in line and f"as {tmp_path / 'flux1-dev'}," in line
    assert "model_index.json, text_encoder, text_encoder_2, tokenizer, tokenizer_2, vae, scheduler" in line
