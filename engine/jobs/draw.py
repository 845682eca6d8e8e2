"""The draw job: the model's LoRA from the blob cache, the pictures drawn on the GPU, saved as PNGs by key."""

from __future__ import annotations

import asyncio
import contextlib
import io

from engine.drawing import DrawError, DrawRequest
from engine.jobs.context import JobContext, JobFailed, RunningJob
from engine.messages import failure
from storage.contract import DrawPayload, DrawResult
from storage.errors import NotFound, PathEscape
from storage.keys import job_prefix

# Reference photos a draft conditions on: each adds its tokens to every step (klein reads up to ~4 comfortably).
MAX_REFERENCES = 4


async def run_draw(ctx: JobContext, run: RunningJob, payload: DrawPayload, lighter: bool) -> DrawResult:
    lora = None
    prompt, references = None, None
    if payload.draft_of is not None:
        prompt, references = await draft_references(ctx, run.job, payload)
    if payload.model_id is not None:
        model = await ctx.store.models.get(payload.model_id)
        if model is None or model.status == "deleted":
            raise JobFailed(failure("model_gone"))
        if model.status != "ready" or not model.weights_key:
            raise JobFailed(failure("model_not_ready"))
        try:
            lora = await ctx.cache.path(model.weights_key, version=model.updated_at)
        except NotFound:
            raise JobFailed(failure("weights_missing")) from None
    picture = await start_picture(ctx, payload.init_image) if payload.init_image else None
    request = DrawRequest.from_payload(payload, lora=lora, init_image=picture, references=references, prompt=prompt,
                                       default_steps=ctx.settings.draw_steps)
    try:
        result = await ctx.on_gpu(ctx.engine.draw, request, lighter)
    except DrawError as exc:
        raise JobFailed(failure("bad_request", detail=str(exc))) from exc
    keys = await save_pictures(ctx.store, run.job.id, result.images, result.seeds)
    return DrawResult(
        images=keys,
        seeds=result.seeds,
        prompt_truncated=result.prompt_truncated,
        prompt_tokens=result.prompt_tokens,
        negative_truncated=result.negative_truncated,
        variation_seeds=request.variation_seeds if request.variation_strength > 0 else None,
        width=result.width, height=result.height, steps=result.steps, sampler=result.sampler,
        draft=references is not None,
    )


async def draft_references(ctx: JobContext, job, payload: DrawPayload):
    """A draft's prompt and reference photos: the job owner's own model only, its photos as the model will be
    trained on them (squared to the model's size), the identifier it does not know yet replaced by "the"."""
    from engine.photos import load_photo_set

    model = await ctx.store.models.get(payload.draft_of)
    if model is None or model.status == "deleted" or model.owner_id != job.owner_id:
        raise JobFailed(failure("model_gone"))
    sources = []
    for key in model.photo_keys[:MAX_REFERENCES]:
        with contextlib.suppress(NotFound, PathEscape):
            sources.append((key.rsplit("/", 1)[-1], await ctx.store.blobs.get(key)))
    photos = await asyncio.to_thread(load_photo_set, sources, ctx.engine.resolution)
    if not photos.images:
        raise JobFailed(failure("no_photos"))
    prompt = payload.prompt
    if model.token:
        prompt = " ".join("the" if word == model.token else word for word in prompt.split())
    return prompt, photos.images


async def start_picture(ctx: JobContext, key: str):
    """The picture an image-to-image draw starts from, decoded by the same bounded rules as training photos."""
    from engine.photos import PhotoRejected, upright_rgb

    try:
        data = await ctx.store.blobs.get(key)
    except (NotFound, PathEscape):
        raise JobFailed(failure("picture_gone")) from None
    try:
        return await asyncio.to_thread(upright_rgb, data)
    except PhotoRejected as exc:
        raise JobFailed(failure("picture_unreadable")) from exc


async def save_pictures(store, job_id: int, images, seeds: list[int]) -> list[str]:
    """Every picture of a draw, or none: a failed save (a full disk) takes the ones already saved back."""
    keys: list[str] = []
    try:
        for index, (image, seed) in enumerate(zip(images, seeds, strict=True)):
            key = f"{job_prefix(job_id)}/{index}_{seed}.png"
            await store.blobs.put(key, await asyncio.to_thread(png_bytes, image))
            keys.append(key)
    except BaseException:
        for key in keys:
            with contextlib.suppress(Exception):
                await store.blobs.delete(key)
        raise
    return keys


def png_bytes(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
