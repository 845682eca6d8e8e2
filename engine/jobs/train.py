"""The training job: an identifier, the owner's photos, a training on the GPU (resumable), its files published."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path

from engine import checkpoint_sync
from engine.base_model import train_resolution
from engine.detection import family_of
from engine.jobs.context import JobContext, JobFailed, RunningJob
from engine.messages import failure
from engine.photos import PhotoSet, load_photo_set
from engine.report_card import drift_warning
from engine.tokens import class_prompt
from storage.contract import TrainPayload, TrainResult
from storage.errors import NotFound
from storage.keys import checkpoint_prefix, class_images_prefix, model_prefix, report_before_prefix


async def run_train(ctx: JobContext, run: RunningJob, payload: TrainPayload, lighter: bool) -> TrainResult:
    from engine.training import prior_for

    model = await ctx.store.models.get(payload.model_id)
    if model is None or model.status == "deleted":
        raise JobFailed(failure("model_gone"))
    # The model starts training under a token none of the owner's live models uses (storage/lifecycle.py).
    try:
        token = await ctx.store.lifecycle.begin_training(model.id, await ctx.on_gpu(ctx.engine.identifier_pool))
    except NotFound:  # deleted since it was read above
        raise JobFailed(failure("model_gone")) from None
    if token is None:
        raise JobFailed(failure("no_token"))
    photo_set = await load_photos(ctx, model)
    num_class = ctx.settings.num_class_images if payload.num_class_images is None else payload.num_class_images
    prior = prior_for(family_of(ctx.engine.pipe), ctx.settings.prior)
    use_class_images = prior == "class-images" and num_class != 0
    trained_at = train_resolution(ctx.engine.pipe, ctx.settings.train_resolution)
    # Shared by every training of this base model at this size: its class images and the report card's "before".
    class_prefix = class_images_prefix(ctx.engine.key, class_prompt(model.class_word), trained_at)
    before_prefix = report_before_prefix(ctx.engine.key, class_prompt(model.class_word), trained_at)
    spec = await train_spec(ctx, run, payload, model, token, photo_set, num_class, prior, trained_at)
    spec = replace(spec, class_image_dir=await ctx.cache.pull_folder(class_prefix) if use_class_images else None,
                   before_dir=await ctx.cache.pull_folder(before_prefix))
    if lighter:
        spec = replace(spec, gradient_checkpointing=True)
    ckpt_prefix = checkpoint_prefix(run.job.id)
    prefix = model_prefix(model.id)
    # What the training writes under these prefixes is not in the blob store until it is pushed or published below;
    # till then the cache's sweep, which drops local files whose blobs are gone, must leave them be (it would take
    # them for a deleted model's, or a deleted class set's, and fail the training at its last step).
    with ctx.cache.working(prefix, ckpt_prefix, class_prefix, before_prefix):
        try:
            result, card_path, drift = await ctx.gpu.run_long(ctx.engine.train, spec, run.on_progress,
                                                              run.should_stop)
        finally:
            if use_class_images:
                await ctx.cache.push_folder(class_prefix)
            await ctx.cache.push_folder(before_prefix)
        # Trained: the checkpoints (optimizer state included) leave this host's disk; the store's copy is the
        # retention sweep's. A training handed back keeps them (it resumes from there, here or elsewhere).
        ctx.cache.drop(ckpt_prefix)
        weights = await ctx.cache.publish(f"{prefix}/lora.safetensors", result.weights_path)
        kohya = await ctx.cache.publish(f"{prefix}/lora_kohya.safetensors", result.kohya_path)
        samples = [await ctx.cache.publish(f"{prefix}/{Path(s).name}", s) for s in result.sample_paths]
        card = await ctx.cache.publish(f"{prefix}/report_card.png", card_path)
    return TrainResult(  # the model is made ready with it, in the job's completion
        model_id=model.id, token=token, class_word=model.class_word, weights_key=weights, kohya_key=kohya,
        sample_keys=samples, steps=result.steps, seconds=result.seconds, resumed_from=result.resumed_from,
        rejected_photos=[r.reason for r in photo_set.rejected], report_card_key=card,
        class_drift=round(drift, 4), drift_warning=drift_warning(drift), params=result.params,
    )


async def load_photos(ctx: JobContext, model) -> PhotoSet:
    """The owner's photos from the blob store, prepared at the model's resolution; none usable fails the job."""
    sources = []
    for key in model.photo_keys:
        with contextlib.suppress(NotFound):
            sources.append((key.rsplit("/", 1)[-1], await ctx.store.blobs.get(key)))
    photo_set = await asyncio.to_thread(load_photo_set, sources, ctx.engine.resolution)
    if not photo_set.images:
        raise JobFailed(failure("no_photos"))
    return photo_set


async def train_spec(ctx: JobContext, run: RunningJob, payload: TrainPayload, model, token: str,
                     photo_set: PhotoSet, num_class: int, prior: str, trained_at: int):
    """What to train, with its checkpoints restored from the blob store and uploaded back as they are made."""
    from engine.training import TrainSpec


    ckpt_prefix = checkpoint_prefix(run.job.id)
    checkpoint_dir = ctx.cache.work_path(ckpt_prefix)
    # Another host may have trained this job up to a checkpoint before it died.
    await checkpoint_sync.restore(ctx.store.blobs, ckpt_prefix, checkpoint_dir)
    loop = asyncio.get_running_loop()

    def upload_checkpoint(folder: Path) -> None:  # on the GPU thread: the step waits for its upload
        asyncio.run_coroutine_threadsafe(checkpoint_sync.upload(ctx.store.blobs, ckpt_prefix, folder), loop).result()

    return TrainSpec(
        photos=photo_set.images,
        class_word=model.class_word,
        token=token,
        output_dir=ctx.cache.work_path(model_prefix(model.id)),
        prior=prior,
        num_class_images=num_class,
        sample_steps=ctx.settings.draw_steps,  # samples and report card: DRAW_STEPS when set, else the family's
        resolution=trained_at,
        checkpoint_dir=checkpoint_dir,
        on_checkpoint=upload_checkpoint,
        steps=payload.steps or ctx.settings.train_steps,
        checkpoint_every=ctx.checkpoint_every,
        device=ctx.settings.device,
    )
