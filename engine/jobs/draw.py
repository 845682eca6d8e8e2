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


async def run_draw(ctx: JobContext, run: RunningJob, payload: DrawPayload, lighter: bool) -> DrawResult:
    lora = None
    if payload.model_id is not None:
        model = await ctx.store.models.get(payload.model_id)
        if model is None or model.status == "deleted":
            raise JobFailed(failure("model_gone"))
        if model.status != "ready" or not model.weights_path:
            raise JobFailed(failure("model_not_ready"))
        try:
            lora = await ctx.cache.path(model.weights_path, version=model.updated_at)
        except NotFound:
            raise JobFailed(failure("weights_missing")) from None
    picture = await start_picture(ctx, payload.init_image) if payload.init_image else None
    request = DrawRequest.from_payload(payload, lora=lora, init_image=picture, default_steps=ctx.settings.draw_steps)
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
    )


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
