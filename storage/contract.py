"""The typed job contract between the bot and the engine: each kind's payload, progress and result, and the limits."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

# --- limits, defined once for the bot (what it accepts) and the engine (what it draws) -----------------------------

MAX_IMAGES_PER_DRAW = 4
# Past ~100 denoising steps no sampler we offer changes the picture visibly; more is only a longer wait.
MAX_DRAW_STEPS = 100
# SD1.x's own default classifier-free guidance (StableDiffusionPipeline uses 7.5); other families bring theirs
# (engine/families/) and the running engine publishes it (EngineInfo).
DEFAULT_GUIDANCE = 7.5
# 0: FLUX.1-schnell draws without guidance; past 20 every family burns its colours.
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0
# The longest prompt any family reads (FLUX.1's T5: 512 tokens); each family's own bound is tighter (the bot's).
MAX_PROMPT_CHARS = 2000
MAX_NEGATIVE_CHARS = 300
# SD1.x is trained at 512 px; the engine publishes the loaded model's own resolution (EngineInfo) at start.
DEFAULT_RESOLUTION = 512
MAX_TRAIN_STEPS = 20_000
# The shapes a user may ask for with --ar; each family turns them into sizes on its own grid (EngineInfo.sizes).
ASPECT_RATIOS = ("1:1", "3:2", "2:3", "16:9", "9:16")
AspectRatio = Literal["1:1", "3:2", "2:3", "16:9", "9:16"]
# --strength: how much of the trained LoRA goes into the picture (0: the base model's picture, 1: as trained).
MAX_STRENGTH = 2.0
# Image-to-image (--change): how much of a starting picture is redrawn (1: nothing of it is kept). Below 0.1 the
# sampler runs no step at all at ordinary step counts; an upscale refines at UPSCALE_CHANGE, enough to sharpen the
# enlarged picture without changing what it shows.
MIN_IMAGE_CHANGE, MAX_IMAGE_CHANGE = 0.1, 1.0
DEFAULT_IMAGE_CHANGE = 0.6
UPSCALE_CHANGE = 0.3
UPSCALE_FACTOR = 2


class JobKind(StrEnum):
    TRAIN = "train"
    DRAW = "draw"
    CLASS_IMAGES = "class_images"


class FailureCode(StrEnum):
    """Why a job failed, as the engine (or the queue) reports it; the bot says it in the user's language
    (bot/locales: `failure_<code>`, with the failure's parameters)."""

    MODEL_GONE = "model_gone"
    MODEL_NOT_READY = "model_not_ready"
    WEIGHTS_MISSING = "weights_missing"
    NO_PHOTOS = "no_photos"
    NO_TOKEN = "no_token"
    OUT_OF_MEMORY = "out_of_memory"
    DIVERGED = "diverged"
    CANCELLED = "cancelled"
    UNKNOWN_KIND = "unknown_kind"  # params: kind
    BAD_REQUEST = "bad_request"  # params: detail (the engine's own words: a request the bot should not have sent)
    NO_ROOM = "no_room"
    PICTURE_GONE = "picture_gone"  # the picture to draw from is no longer kept
    PICTURE_UNREADABLE = "picture_unreadable"
    INTERNAL = "internal"
    GAVE_UP = "gave_up"  # params: attempts — the engine died at every attempt


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class JobPayload(_Record):
    """What the bot asks the engine to do; `kind` names the job kind it belongs to."""

    kind: ClassVar[JobKind]


class TrainPayload(JobPayload):
    kind: ClassVar[JobKind] = JobKind.TRAIN
    model_id: int
    steps: int | None = Field(None, ge=1, le=MAX_TRAIN_STEPS)  # None: TRAIN_STEPS or chosen from the photos
    num_class_images: int | None = Field(None, ge=0, le=5_000)  # None: NUM_CLASS_IMAGES


class DrawPayload(JobPayload):
    kind: ClassVar[JobKind] = JobKind.DRAW
    model_id: int | None  # None: the base model alone
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str = Field("", max_length=MAX_NEGATIVE_CHARS)
    n: int = Field(1, ge=1, le=MAX_IMAGES_PER_DRAW)
    steps: int | None = Field(None, ge=1, le=MAX_DRAW_STEPS)  # None: DRAW_STEPS, else the family's default
    guidance: float | None = Field(None, ge=MIN_GUIDANCE, le=MAX_GUIDANCE)  # None: the family's default
    seeds: list[int] | None = None  # None: random seeds, returned in the result
    width: int | None = Field(None, ge=64, le=2048)  # None: the base model's own resolution
    height: int | None = Field(None, ge=64, le=2048)
    # "Variations of #k": each image starts from seed k's noise blended with its own variation seed's noise.
    variation_seeds: list[int] | None = None
    variation_strength: float = Field(0.0, ge=0.0, le=1.0)
    sampler: str | None = Field(None, max_length=32)  # None: the family's default (EngineInfo.samplers)
    strength: float = Field(1.0, ge=0.0, le=MAX_STRENGTH)
    aspect_ratio: AspectRatio | None = None  # None: square at the model's own resolution
    # Image-to-image: the picture to start from (a blob key made by storage) and how much of it is redrawn; its
    # shape decides the size. `upscale`: the picture enlarged UPSCALE_FACTOR× and refined, delivered as a file.
    init_image: str | None = Field(None, max_length=300)
    image_change: float = Field(DEFAULT_IMAGE_CHANGE, ge=MIN_IMAGE_CHANGE, le=MAX_IMAGE_CHANGE)
    upscale: bool = False
    # A draft while a model trains: its owner's own photo set as reference pictures of a base model that takes them
    # (FLUX.2 [klein]); the engine draws only from the job owner's own model (never anyone else's photos).
    draft_of: int | None = None


class ClassImagesPayload(JobPayload):
    kind: ClassVar[JobKind] = JobKind.CLASS_IMAGES
    class_word: str = Field(min_length=1, max_length=60)
    count: int | None = Field(None, ge=1, le=5_000)  # None: NUM_CLASS_IMAGES


Stage = Literal["class_images", "training", "samples", "report_card"]


class Progress(_Record):
    """Where a long job is: the bot turns these into one progress message edited in place."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    stage: Stage
    step: int = Field(ge=0)
    total: int = Field(ge=0)
    loss: float | None = None
    eta_s: float | None = None
    instance_loss: float | None = None
    class_loss: float | None = None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


class JobResult(_Record):
    kind: ClassVar[JobKind]


class TrainResult(JobResult):
    kind: ClassVar[JobKind] = JobKind.TRAIN
    model_id: int
    token: str
    class_word: str
    # Blob keys. Rows written before the keys were named so carry `*_path` names: still read.
    weights_key: str = Field(validation_alias=AliasChoices("weights_key", "weights_path"))
    kohya_key: str = Field(validation_alias=AliasChoices("kohya_key", "kohya_path"))
    sample_keys: list[str] = Field(validation_alias=AliasChoices("sample_keys", "sample_paths"))
    steps: int
    seconds: float
    resumed_from: int = 0
    rejected_photos: list[str] = Field(default_factory=list)
    # The class prompt drawn without and with the new LoRA at fixed seeds, and how far it moved.
    report_card_key: str = Field(validation_alias=AliasChoices("report_card_key", "report_card_path"))
    class_drift: float
    drift_warning: bool
    # The training's own parameters (steps, rank, prior method …), kept on the model.
    params: dict[str, Any] = Field(default_factory=dict)


class DrawResult(JobResult):
    kind: ClassVar[JobKind] = JobKind.DRAW
    images: list[str]
    seeds: list[int]
    prompt_truncated: bool = False
    prompt_tokens: int = 0
    negative_truncated: bool = False
    variation_seeds: list[int] | None = None
    # What was really drawn, so a caption can say it and the picture can be reproduced.
    width: int = 0
    height: int = 0
    steps: int = 0
    sampler: str = ""
    draft: bool = False  # drawn from reference photos, before the model was trained


class ClassImagesResult(JobResult):
    kind: ClassVar[JobKind] = JobKind.CLASS_IMAGES
    count: int
    folder: str


PAYLOADS: dict[JobKind, type[JobPayload]] = {p.kind: p for p in (TrainPayload, DrawPayload, ClassImagesPayload)}
RESULTS: dict[JobKind, type[JobResult]] = {r.kind: r for r in (TrainResult, DrawResult, ClassImagesResult)}


class ContractError(ValueError):
    """A payload or result does not fit its job kind (a bug in whoever wrote it, never user input)."""


def parse_payload(kind: str, data: dict[str, Any]) -> JobPayload:
    try:
        return PAYLOADS[JobKind(kind)].model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise ContractError(f"bad {kind} payload: {exc}") from None


def parse_result(kind: str, data: dict[str, Any]) -> JobResult:
    try:
        return RESULTS[JobKind(kind)].model_validate(data)
    except (ValueError, ValidationError) as exc:
        raise ContractError(f"bad {kind} result: {exc}") from None


class EngineInfo(_Record):
    """What the running engine's base model allows; the engine publishes it at start, the bot reads it.

    The defaults describe SD1.x at 512 px, what the bot assumes before any engine has started."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    family: str = "sd1"
    title: str = "Stable Diffusion 1.x"
    resolution: int = DEFAULT_RESOLUTION
    max_draw_steps: int = MAX_DRAW_STEPS
    default_draw_steps: int = 25
    default_guidance: float = DEFAULT_GUIDANCE
    guidance_embedded: bool = False  # FLUX.1-dev: guidance is an input of the model, not CFG
    samplers: tuple[str, ...] = ("dpm++2m-karras", "euler-a", "euler", "ddim", "default")
    default_sampler: str = "dpm++2m-karras"
    # aspect ratio → (width, height) rounded to the model's grid within its pixel budget
    sizes: dict[str, tuple[int, int]] = Field(default_factory=lambda: {
        "1:1": (512, 512), "3:2": (608, 408), "2:3": (408, 608), "16:9": (680, 384), "9:16": (384, 680)})
    negative_prompt: bool = True
    token_limit: int = 75  # prompt tokens the text encoder reads
    draws_from_pictures: bool = True  # an image-to-image mode (a /draw on a picture, the 2× buttons)
    takes_references: bool = False  # draws from reference photos (FLUX.2 [klein]): drafts while a model trains

    @property
    def min_photo_side(self) -> int:
        """Photos under half the training resolution on their short side would be upscaled into mush."""
        return self.resolution // 2
