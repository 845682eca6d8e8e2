"""COMPILE_DENOISER: the compiled denoiser draws what the eager one draws, and switching users' LoRAs, strengths,
the base model and a training in between never recompiles it.

torch.compile runs here with its "eager" backend: the same tracing, graphs and guards as inductor (a recompile is a
guard that fails, whichever backend compiles the graph), without inductor's minute of C++ per graph on this CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.engine.conftest import quick_spec

STEPS = 3


@pytest.fixture
def fresh_pipe(tiny_model_dir, runtime):
    """A pipeline of its own: compiling puts the UNet in channels-last, which the shared one must not see."""
    import torch

    from engine.base_model import load_base_pipeline

    torch._dynamo.reset()
    yield load_base_pipeline(tiny_model_dir, runtime)
    torch._dynamo.reset()


@pytest.fixture
def compiled_drawer(fresh_pipe, runtime):
    from engine.compiled_denoiser import CompileOptions
    from engine.drawing import Drawer

    return Drawer(fresh_pipe, runtime, compile=CompileOptions(backend="eager"))


@pytest.fixture
def eager_drawer(pipe, runtime):
    from engine.drawing import Drawer

    drawer = Drawer(pipe, runtime)
    yield drawer
    drawer.forget_loras()


def _lora(tmp_path, tiny_model_dir, runtime, name: str, rank: int, seed: int, text_encoder: bool = False):
    """A LoRA saved the way a training saves one: random non-zero weights at `rank` on the attention layers."""
    import torch
    from peft import LoraConfig

    from engine import lora_files
    from engine.base_model import load_base_pipeline

    pipe = load_base_pipeline(tiny_model_dir, runtime)
    torch.manual_seed(seed)
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                     target_modules=lora_files.UNET_TARGETS), adapter_name=lora_files.ADAPTER)
    if text_encoder:
        pipe.text_encoder.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                                 target_modules=lora_files.TEXT_ENCODER_TARGETS),
                                      adapter_name=lora_files.ADAPTER)
    return lora_files.save_diffusers_lora(tmp_path / f"{name}.safetensors", pipe.unet,
                                          pipe.text_encoder if text_encoder else None)


@pytest.fixture(scope="module")
def loras(tmp_path_factory, tiny_model_dir, runtime):
    folder = tmp_path_factory.mktemp("loras")
    return {
        "mine": _lora(folder, tiny_model_dir, runtime, "mine", rank=4, seed=1),
        "theirs": _lora(folder, tiny_model_dir, runtime, "theirs", rank=2, seed=2),  # a smaller rank: padded
        "with_text": _lora(folder, tiny_model_dir, runtime, "with_text", rank=4, seed=3, text_encoder=True),
    }


def _draw(drawer, lora=None, strength: float = 1.0):
    from engine.drawing import DrawRequest

    result = drawer.draw(DrawRequest("a photo of sks dog", n=1, steps=STEPS, seeds=[5], lora=lora, strength=strength))
    return np.asarray(result.images[0]).astype(int)


def _same(a, b) -> bool:
    return np.abs(a - b).max() <= 1  # channels-last convolutions may round a unit differently


def test_the_compiled_denoiser_draws_each_lora_and_strength_as_the_eager_one_does(compiled_drawer, eager_drawer,
                                                                                     loras):
    requests = [(None, 1.0), (loras["mine"], 1.0), (loras["theirs"], 1.0), (loras["mine"], 0.5), (None, 1.0),
                (loras["with_text"], 1.0), (loras["mine"], 1.0)]
    compiled = [_draw(compiled_drawer, lora, strength) for lora, strength in requests]
    eager = [_draw(eager_drawer, lora, strength) for lora, strength in requests]
    for (lora, strength), got, expected in zip(requests, compiled, eager, strict=True):
        assert _same(got, expected), (lora and lora.name, strength)
    assert not _same(compiled[1], compiled[0]) and not _same(compiled[1], compiled[2])
    assert not _same(compiled[3], compiled[1])
    assert compiled_drawer.compiled.swaps == 3  # mine, theirs, mine again: the text-encoder LoRA went eagerly


def test_switching_loras_strengths_and_the_base_model_never_recompiles(compiled_drawer, loras):
    import torch

    _draw(compiled_drawer)  # the bare denoiser's graph, before any LoRA
    _draw(compiled_drawer, loras["mine"])  # the slot's graph: every LoRA after this goes into it
    with torch._dynamo.config.patch(error_on_recompile=True):
        _draw(compiled_drawer, loras["theirs"])
        _draw(compiled_drawer, loras["mine"], strength=0.3)
        _draw(compiled_drawer, loras["mine"], strength=1.7)
        _draw(compiled_drawer)
        _draw(compiled_drawer, loras["with_text"])  # drawn eagerly; its adapter is gone again afterwards
        _draw(compiled_drawer, loras["theirs"])
    assert set(compiled_drawer.pipe.unet.peft_config) == {"kabina_slot"}


def test_strength_zero_in_the_slot_draws_the_base_model_exactly(compiled_drawer, loras):
    base = _draw(compiled_drawer)
    _draw(compiled_drawer, loras["mine"])
    assert np.array_equal(_draw(compiled_drawer, loras["mine"], strength=0.0), base)
    assert np.array_equal(_draw(compiled_drawer), base)


def test_a_training_between_draws_neither_recompiles_nor_leaves_its_adapter(tmp_path, fresh_pipe, runtime, photos,
                                                                           loras):
    import torch

    from engine.compiled_denoiser import CompileOptions
    from engine.gpu import Engine

    engine = Engine(tmp_path / "model", runtime, fresh_pipe, key="tiny", compile=CompileOptions(backend="eager"))
    _draw(engine.drawer, loras["mine"])
    before = _draw(engine.drawer, loras["theirs"])
    spec = quick_spec(tmp_path, photos, steps=3, sample_seeds=(), report_card=False)
    draws_between = []

    def pause_point():
        if not draws_between:  # a /draw slipping in between two training steps: drawn by the eager denoiser
            draws_between.append(engine.draw(_request(loras["mine"])))

    result, _, _ = engine.train(spec, lambda p: None, lambda: False, pause_point=pause_point)
    assert draws_between and result.weights_path.is_file()
    with torch._dynamo.config.patch(error_on_recompile=True):
        after = _draw(engine.drawer, loras["theirs"])
        _draw(engine.drawer, result.weights_path)  # the new model goes into the slot too
    assert _same(after, before)
    assert set(fresh_pipe.unet.peft_config) == {"kabina_slot"}


def _request(lora):
    from engine.drawing import DrawRequest

    return DrawRequest("a photo of sks dog", n=1, steps=STEPS, seeds=[5], lora=lora)
