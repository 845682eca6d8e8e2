"""The job contract: one typed definition of each payload and result, and the limits, shared by bot and engine."""

from __future__ import annotations

import pytest

from storage import ContractError, DrawPayload, EngineInfo, Storage, TrainPayload, contract


def test_a_payload_outside_the_limits_is_refused_at_the_edge() -> None:
    with pytest.raises(ValueError):
        DrawPayload(model_id=1, prompt="sks dog", n=contract.MAX_IMAGES_PER_DRAW + 1)
    with pytest.raises(ValueError):
        DrawPayload(model_id=1, prompt="sks dog", steps=contract.MAX_DRAW_STEPS + 1)
    with pytest.raises(ValueError):
        DrawPayload(model_id=1, prompt="")
    with pytest.raises(ContractError):
        contract.parse_payload("draw", {"model_id": 1, "prompt": "x", "surprise": True})
    assert DrawPayload(model_id=None, prompt="x").guidance is None  # the base model family's own default


def test_the_bot_and_the_engine_read_their_limits_from_the_contract() -> None:
    from bot.services import drawing as bot_drawing
    from engine import drawing as engine_drawing

    # One name for one thing: the engine's request has the payload's options, and what the draw job reads for it
    # (the model's LoRA file, for a draft its owner's photos as reference pictures).
    request, payload = set(engine_drawing.DrawRequest.__dataclass_fields__), set(DrawPayload.model_fields)
    assert request == payload - {"model_id", "draft_of"} | {"lora", "references"}
    assert bot_drawing.DrawOptions().cfg is engine_drawing.DrawRequest("x").guidance is None  # the family's
    with pytest.raises(bot_drawing.DrawInputError):
        bot_drawing.parse_draw(f"sks dog --steps {contract.MAX_DRAW_STEPS + 1}", 25)
    assert bot_drawing.parse_draw(f"sks dog --steps {contract.MAX_DRAW_STEPS}", 25)[1].steps == contract.MAX_DRAW_STEPS


async def test_the_newest_engine_tells_the_bot_what_its_model_allows(store: Storage) -> None:
    assert await store.engines.current() == EngineInfo()  # nothing started yet: SD1.x defaults
    await store.engines.publish("a", EngineInfo(family="sd1", resolution=512))
    await store.engines.publish("b", EngineInfo(family="sdxl", resolution=1024))
    assert (await store.engines.current()).resolution == 1024
    assert TrainPayload(model_id=3).kind == "train"


def test_a_training_result_stored_before_its_keys_were_named_so_still_reads() -> None:
    # Rows written before the rename carry `*_path` names for what were always blob keys.
    stored = {"model_id": 1, "token": "sks", "class_word": "dog", "weights_path": "models/1/lora.safetensors",
              "kohya_path": "models/1/lora_kohya.safetensors", "sample_paths": ["models/1/sample_0.png"],
              "steps": 1, "seconds": 1.0, "report_card_path": "models/1/report_card.png", "class_drift": 0.0,
              "drift_warning": False}
    result = contract.parse_result("train", stored)
    assert (result.weights_key, result.kohya_key, result.sample_keys, result.report_card_key) == (
        "models/1/lora.safetensors", "models/1/lora_kohya.safetensors", ["models/1/sample_0.png"],
        "models/1/report_card.png")
    assert {"weights_key", "kohya_key", "sample_keys", "report_card_key"} <= set(result.to_json())
    assert not any(name.endswith("_path") or name.endswith("_paths") for name in result.to_json())
