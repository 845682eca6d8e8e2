"""The class-images job: the base model's pictures of a class, made once per model and shared by every user."""

from __future__ import annotations

from engine.detection import family_of
from engine.jobs.context import JobContext, RunningJob
from engine.tokens import class_prompt
from storage.contract import ClassImagesPayload, ClassImagesResult
from storage.keys import class_images_prefix


async def run_class_images(ctx: JobContext, run: RunningJob, payload: ClassImagesPayload,
                           lighter: bool) -> ClassImagesResult:
    prompt = class_prompt(payload.class_word)
    count = payload.count or ctx.settings.num_class_images or family_of(ctx.engine.pipe).class_images
    prefix = class_images_prefix(ctx.engine.key, prompt, ctx.engine.resolution)
    folder = await ctx.cache.pull_folder(prefix)
    try:
        paths = await ctx.gpu.run_long(ctx.engine.class_images, folder, prompt, count, run.on_progress,
                                       run.should_stop)
    finally:
        await ctx.cache.push_folder(prefix)  # what was made before a stop serves the next try, anywhere
    return ClassImagesResult(count=len(paths), folder=prefix)
