"""The engine worker: claims jobs from storage's queue and runs them on the GPU, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine import checkpoint_sync
from engine.blob_cache import BlobCache, default_cache_dir
from engine.class_images import Stopped, ensure_class_images
from engine.drawing import Drawer, DrawError, DrawRequest
from engine.gpu_lane import GpuLane
from engine.messages import Failure, failure
from engine.photos import load_photo_set
from engine.report_card import drift_warning
from engine.telemetry import EngineTelemetry
from engine.tokens import class_prompt
from storage.contract import (
    ClassImagesPayload,
    ClassImagesResult,
    DrawPayload,
    DrawResult,
    EngineInfo,
    JobKind,
    JobResult,
    Progress,
    TrainPayload,
    TrainResult,
)
from storage.errors import NotFound, PathEscape, StorageUnavailable
from storage.keys import (
    checkpoint_prefix,
    class_images_prefix,
    job_prefix,
    model_prefix,
    report_before_prefix,
)
from storage.logs import job_context, report_storage_trouble

log = logging.getLogger(__name__)

# Reference photos a draft conditions on: each adds its tokens to every step (klein reads up to ~4 comfortably).
MAX_REFERENCES = 4
KINDS = [JobKind.DRAW, JobKind.CLASS_IMAGES, JobKind.TRAIN]
LONG_KINDS = {JobKind.TRAIN, JobKind.CLASS_IMAGES}
PROGRESS_EVERY_S = 1.0  # progress rows are events the bot turns into message edits: ~1/s is plenty
# While a training runs, how often to look for draws to slip in between its steps (a claim costs ~0.2 ms).
INTERLEAVE_POLL_S = 0.1
# How often to try again to record a job's end while the database cannot be written (a full disk).
PERSIST_RETRY_S = 2.0


class JobFailed(Exception):
    """A failure the user is told about: `args[0]` is its Failure (a code and its parameters)."""


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class WorkerOptions:
    worker_id: str
    lease_s: float = 30.0
    # How often a running job renews its lease and learns of a cancel; a third of the lease leaves two
    # renewals of slack before anyone may judge the job abandoned.
    heartbeat_s: float | None = None
    poll_s: float = 1.0
    checkpoint_every: int = 100
    once: bool = False

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3


class Engine:
    """The loaded base model and what can be done with it; every method runs on the GPU thread."""

    def __init__(self, base_model: Path, runtime, pipe, key: str | None = None) -> None:
        from engine.base_model import base_model_key, training_resolution

        self.base_model = base_model
        self.runtime = runtime
        self.pipe = pipe
        self.drawer = Drawer(pipe, runtime)
        self.key = key or base_model_key(base_model)
        self.resolution = training_resolution(pipe)
        self._training = False  # only read and written on the GPU thread

    @classmethod
    def load(cls, base_model: Path, device: str) -> Engine:
        from engine.base_model import load_base_pipeline, pick_runtime

        runtime = pick_runtime(device)
        return cls(base_model, runtime, load_base_pipeline(base_model, runtime))

    def info(self, draw_steps: int | None = None) -> EngineInfo:
        """The loaded model's limits for the bot: its family's, at this model's own size (DRAW_STEPS overrides)."""
        from engine.drawing import limits_of
        from engine.families import ASPECT_RATIOS

        limits = limits_of(self.pipe)
        family = limits.family
        return EngineInfo(
            family=family.name, title=family.title, resolution=limits.resolution, max_draw_steps=family.max_steps,
            default_draw_steps=draw_steps or family.draw_steps, default_guidance=family.guidance,
            guidance_embedded=family.guidance_embedded, samplers=family.samplers,
            default_sampler=family.default_sampler, sizes={ar: limits.size_for(ar) for ar in ASPECT_RATIOS},
            negative_prompt=family.negative_prompt, token_limit=self.drawer.count_tokens("")[1],
            draws_from_pictures=self.drawer.draws_from_pictures(),
            takes_references=family.takes_references,
        )

    def identifier_pool(self) -> list[str]:
        from engine.conditioning import identifier_pool

        return identifier_pool(self.pipe)

    def draw(self, request: DrawRequest, lighter: bool = False):
        if not self._training:
            return self.drawer.draw(request, lighter=lighter)
        with self._training_paused():
            return self.drawer.draw(request, lighter=lighter)

    @contextlib.contextmanager
    def _training_paused(self):
        """A draw between two training steps: the trained adapter steps aside, then comes back untouched.

        The draw's LoRA is loaded beside the training adapter and deleted afterwards (not cached: the training
        ends with every adapter unloaded anyway); the training's weights, optimizer and random streams are not
        touched, so a training with draws in between ends bit for bit where it would have without them."""
        from engine.lora_files import ADAPTER

        unet = self.pipe.unet
        was_training = unet.training
        unet.eval()
        try:
            yield
        finally:
            adapters = list(getattr(unet, "peft_config", {}) or {})
            visitors = [name for name in adapters if name != ADAPTER]
            if visitors:
                self.pipe.delete_adapters(visitors)
            self.drawer.clear_cache()
            if adapters:
                self.pipe.enable_lora()  # a base-model draw disabled every adapter
            if ADAPTER in adapters:
                unet.set_adapter(ADAPTER)
                text_encoder_adapters = getattr(self.pipe.text_encoder, "peft_config", {}) or {}
                if ADAPTER in text_encoder_adapters:
                    self.pipe.text_encoder.set_adapter(ADAPTER)
            if was_training:
                unet.train()

    def train(self, spec, on_progress, should_stop, pause_point=None):
        from engine.training import train

        self.drawer.forget_loras()  # training needs the bare base model
        self._training = True
        try:
            # The library draws the samples and the report card too (with pause points between its draws).
            result = train(spec, on_progress, should_stop, pipe=self.pipe, runtime=self.runtime,
                           pause_point=pause_point)
            return result, result.report_card_path, result.class_drift
        finally:
            self._training = False
            self.drawer.forget_loras()

    def class_images(self, folder: Path, prompt: str, count: int, on_progress, should_stop, pause_point=None):
        self.drawer.forget_loras()
        self._training = True  # draws in between must leave no adapter behind in the class images
        try:
            return ensure_class_images(
                self.pipe, folder, prompt, count, self.resolution, on_progress=on_progress,
                should_stop=should_stop, pause_point=pause_point,
            )
        finally:
            self._training = False


class JobRun:
    """One claimed job: its lease kept alive, its progress published (throttled), its stop flag."""

    def __init__(self, worker: Worker, job) -> None:
        self.worker = worker
        self.job = job
        self.cancelled = False
        self.lease_lost = False
        self.latest: Progress | None = None  # written by the GPU thread, read by the pump (a plain swap)

    def on_progress(self, progress: dict) -> None:
        """The engine library reports plain dicts; the contract's Progress checks them at the edge."""
        self.latest = Progress.model_validate(progress)

    def should_stop(self) -> bool:
        return self.cancelled or self.lease_lost or self.worker.stopping.is_set()

    async def keep_alive(self) -> None:
        store, wid = self.worker.store, self.worker.options.worker_id
        from storage import JobCancelled, LeaseLost

        sent: Progress | None = None
        last_sent = last_beat = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_beat >= self.worker.options.heartbeat_interval:
                    await store.jobs.heartbeat(self.job.id, wid, lease_s=self.worker.options.lease_s)
                    last_beat = now
                latest = self.latest
                stage_changed = latest is not None and (sent is None or latest.stage != sent.stage)
                if latest is not None and latest is not sent and (stage_changed or now - last_sent >= PROGRESS_EVERY_S):
                    await store.jobs.report_progress(self.job.id, wid, latest)
                    sent, last_sent = latest, now
            except JobCancelled:
                self.cancelled = True
            except LeaseLost:
                self.lease_lost = True
                return
            except StorageUnavailable as exc:  # a full disk: nobody else can take the job either
                report_storage_trouble(exc, log)
            except Exception:  # a busy database must not kill the job; the next beat retries
                log.exception("heartbeat of job %s failed", self.job.id)
            await asyncio.sleep(0.2)


class Worker:
    def __init__(self, store, settings, engine: Engine, options: WorkerOptions, cache: BlobCache | None = None) -> None:
        self.store = store
        self.settings = settings
        self.engine = engine
        self.options = options
        self.cache = cache if cache is not None else open_cache(store, settings)
        self.stopping = asyncio.Event()
        # One thread owns the GPU while the loop keeps beating; draws slip in between training steps.
        self.gpu = GpuLane()
        self._interleaved: set[asyncio.Task] = set()

    async def on_gpu(self, fn, *args, **kwargs):
        return await self.gpu.run(fn, *args, **kwargs)

    def stop(self) -> None:
        log.info("stopping: the current job checkpoints and is handed back")
        self.stopping.set()

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    job = await self.store.lifecycle.claim(self.options.worker_id, KINDS, lease_s=self.options.lease_s)
                except Exception:  # e.g. the database is busy: wait and look again rather than die
                    log.exception("claiming a job failed")
                    job = None
                if job is None:
                    if self.options.once and not await self._work_left():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), timeout=self.options.poll_s)
                    continue
                await self.serve(job)
        finally:
            if self._interleaved:
                await asyncio.gather(*self._interleaved, return_exceptions=True)
            self.gpu.shutdown()

    async def _work_left(self) -> bool:
        """Queued jobs, or running ones another worker holds (its lease may yet run out and come to us)."""
        try:
            return await self.store.jobs.unfinished_count() > 0
        except Exception:
            log.exception("counting the jobs left failed")
            return True

    async def _interleave_draws(self) -> None:
        """While a long job holds the GPU, claim draws and hand them to its next pause point."""
        while not self.stopping.is_set():
            try:
                job = await self.store.lifecycle.claim(self.options.worker_id, ["draw"], lease_s=self.options.lease_s)
            except Exception:
                log.exception("claiming a draw during training failed")
                job = None
            if job is None:
                await asyncio.sleep(INTERLEAVE_POLL_S)
                continue
            task = asyncio.create_task(self.serve(job))
            self._interleaved.add(task)
            task.add_done_callback(self._interleaved.discard)

    async def serve(self, job) -> None:
        """Run one job to an end state; nothing a job does can stop the worker."""
        with job_context(job.id):
            interleaver = asyncio.create_task(self._interleave_draws()) if job.kind in LONG_KINDS else None
            try:
                await self._serve(job)
            except Exception:  # even recording the job's end failed: its lease runs out and it is retried
                log.exception("job %s could not be brought to an end", job.id)
            finally:
                if interleaver is not None:
                    interleaver.cancel()

    async def _serve(self, job) -> None:
        run = JobRun(self, job)
        pump = asyncio.create_task(run.keep_alive())
        wid = self.options.worker_id
        log.info("job %s (%s) attempt %s", job.id, job.kind, job.attempts)
        try:
            # A CUDA out-of-memory error earns one more try with lighter settings; anything else ends the job.
            for lighter in (False, True):
                try:
                    result = await self.dispatch(run, lighter=lighter)
                except Stopped:
                    result = None
                except JobFailed as exc:
                    await self._settle(run, error=exc.args[0])
                    return
                except Exception as exc:
                    if lighter or not is_out_of_memory(exc):
                        await self._settle(run, error=self._describe(exc))
                        return
                    log.warning("job %s ran out of GPU memory; retrying once with lighter settings", job.id)
                    await self.on_gpu(_free_gpu_memory)
                    continue
                break
            if result is None:
                await self._settle(run)
            else:
                from storage import LeaseLost

                try:
                    # A training's model is ready with it (or, deleted meanwhile, the job ends cancelled).
                    await self._persist(run, lambda: self.store.lifecycle.complete(job.id, wid, result))
                    log.info("job %s done", job.id)
                except LeaseLost:
                    log.warning("job %s finished after its lease was lost; another worker owns it now", job.id)
        finally:
            pump.cancel()

    async def _persist(self, run: JobRun, write) -> None:
        """Record a job's end; while nothing can be saved (a full disk) keep trying, the lease kept alive by the
        pump, until it works, the lease is lost or the worker stops."""
        while True:
            try:
                await write()
                return
            except StorageUnavailable as exc:
                report_storage_trouble(exc, log)
                if run.lease_lost or self.stopping.is_set():
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=PERSIST_RETRY_S)

    def _describe(self, exc: BaseException) -> Failure:
        if isinstance(exc, StorageUnavailable):
            report_storage_trouble(exc, log)
            return failure("no_room")
        if is_out_of_memory(exc):
            return failure("out_of_memory")
        if isinstance(exc, FloatingPointError):
            return failure("diverged")
        log.exception("job failed", exc_info=exc)
        return failure("internal")

    async def _settle(self, run: JobRun, error: Failure | None = None) -> None:
        """End a job that did not complete: failed, cancelled, or handed back on shutdown."""
        from storage import LeaseLost

        job, wid = run.job, self.options.worker_id
        try:
            if error is not None:  # a training's model fails with it (storage/lifecycle.py)
                await self._persist(run, lambda: self.store.lifecycle.fail(job.id, wid, error.code, error.params))
                log.info("job %s failed: %s", job.id, error)
            elif run.cancelled:  # a cancelled training's model goes with it
                await self._persist(run, lambda: self.store.lifecycle.cancelled(job.id, wid))
            elif self.stopping.is_set():
                await self.store.lifecycle.release(job.id, wid)
                log.info("job %s handed back; its checkpoint is kept", job.id)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker has it", job.id)

    async def dispatch(self, run: JobRun, lighter: bool) -> JobResult | None:
        payload = run.job.payload
        if isinstance(payload, DrawPayload):
            return await self.draw(run, payload, lighter)
        if isinstance(payload, TrainPayload):
            return await self.train(run, payload, lighter)
        if isinstance(payload, ClassImagesPayload):
            return await self.class_images(run, payload)
        raise JobFailed(failure("unknown_kind", kind=run.job.kind))

    async def draw(self, run: JobRun, p: DrawPayload, lighter: bool) -> DrawResult:
        lora = None
        prompt, references = p.prompt, None
        if p.draft_of is not None:
            prompt, references = await self._draft_references(run.job, p)
        if p.model_id is not None:
            model = await self.store.models.get(p.model_id)
            if model is None or model.status == "deleted":
                raise JobFailed(failure("model_gone"))
            if model.status != "ready" or not model.weights_path:
                raise JobFailed(failure("model_not_ready"))
            try:
                lora = await self.cache.path(model.weights_path, version=model.updated_at)
            except NotFound:
                raise JobFailed(failure("weights_missing")) from None
        request = DrawRequest(
            prompt=prompt,
            references=references,
            negative_prompt=p.negative_prompt,
            n=p.n,
            steps=p.steps or self.settings.draw_steps,
            guidance=p.guidance,
            seeds=p.seeds,
            width=p.width,
            height=p.height,
            lora=lora,
            variation_seeds=p.variation_seeds,
            variation_strength=p.variation_strength,
            sampler=p.sampler,
            lora_scale=p.strength,
            aspect_ratio=p.aspect_ratio,
            init_image=await self._init_image(p.init_image) if p.init_image else None,
            image_change=p.image_change,
            upscale=p.upscale,
        )
        try:
            result = await self.on_gpu(self.engine.draw, request, lighter)
        except DrawError as exc:
            raise JobFailed(failure("bad_request", detail=str(exc))) from exc
        keys = await self._save_images(run.job.id, result)
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

    async def _draft_references(self, job, p: DrawPayload):
        """A draft's prompt and reference photos: the job owner's own model only, its photos as the model will be
        trained on them (squared to the model's size), the identifier it does not know yet replaced by "the"."""
        from engine.photos import load_photo_set

        model = await self.store.models.get(p.draft_of)
        if model is None or model.status == "deleted" or model.owner_id != job.owner_id:
            raise JobFailed(failure("model_gone"))
        sources = []
        for key in model.photo_paths[:MAX_REFERENCES]:
            with contextlib.suppress(NotFound, PathEscape):
                sources.append((key.rsplit("/", 1)[-1], await self.store.blobs.get(key)))
        photos = await asyncio.to_thread(load_photo_set, sources, self.engine.resolution)
        if not photos.images:
            raise JobFailed(failure("no_photos"))
        prompt = p.prompt
        if model.token:
            prompt = " ".join("the" if word == model.token else word for word in prompt.split())
        return prompt, photos.images

    async def _init_image(self, key: str):
        """The picture an image-to-image draw starts from, decoded by the same bounded rules as training photos."""
        from engine.photos import PhotoRejected, upright_rgb

        try:
            data = await self.store.blobs.get(key)
        except (NotFound, PathEscape):
            raise JobFailed(failure("picture_gone")) from None
        try:
            return await asyncio.to_thread(upright_rgb, data)
        except PhotoRejected as exc:
            raise JobFailed(failure("picture_unreadable")) from exc

    async def _save_images(self, job_id: int, result) -> list[str]:
        """Every picture of a draw, or none: a failed save (a full disk) takes the ones already saved back."""
        keys: list[str] = []
        try:
            for index, (image, seed) in enumerate(zip(result.images, result.seeds, strict=True)):
                key = f"{job_prefix(job_id)}/{index}_{seed}.png"
                await self.store.blobs.put(key, await asyncio.to_thread(_png, image))
                keys.append(key)
        except BaseException:
            for key in keys:
                with contextlib.suppress(Exception):
                    await self.store.blobs.delete(key)
            raise
        return keys

    async def class_images(self, run: JobRun, p: ClassImagesPayload) -> ClassImagesResult:
        from engine.detection import family_of

        prompt = class_prompt(p.class_word)
        count = p.count or self.settings.num_class_images or family_of(self.engine.pipe).class_images
        prefix = class_images_prefix(self.engine.key, prompt, self.engine.resolution)
        folder = await self.cache.pull_folder(prefix)
        try:
            paths = await self.gpu.run_long(self.engine.class_images, folder, prompt, count, run.on_progress,
                                            run.should_stop)
        finally:
            await self.cache.push_folder(prefix)  # what was made before a stop serves the next try, anywhere
        return ClassImagesResult(count=len(paths), folder=prefix)

    async def train(self, run: JobRun, p: TrainPayload, lighter: bool) -> TrainResult:
        from engine.base_model import train_resolution
        from engine.detection import family_of
        from engine.training import TrainSpec, prior_for

        job = run.job
        model = await self.store.models.get(p.model_id)
        if model is None or model.status == "deleted":
            raise JobFailed(failure("model_gone"))
        # The model starts training under a token none of the owner's live models uses (storage/lifecycle.py).
        token = await self.store.lifecycle.begin_training(model.id, await self.on_gpu(self.engine.identifier_pool))
        if token is None:
            raise JobFailed(failure("no_token"))
        resolution = self.engine.resolution
        trained_at = train_resolution(self.engine.pipe, self.settings.train_resolution)
        sources = []
        for key in model.photo_paths:
            with contextlib.suppress(NotFound):
                sources.append((key.rsplit("/", 1)[-1], await self.store.blobs.get(key)))
        photo_set = await asyncio.to_thread(load_photo_set, sources, resolution)
        if not photo_set.images:
            raise JobFailed(failure("no_photos"))
        num_class = self.settings.num_class_images if p.num_class_images is None else p.num_class_images
        prior = prior_for(family_of(self.engine.pipe), self.settings.prior)
        use_class_images = prior == "class-images" and num_class != 0
        class_prefix = class_images_prefix(self.engine.key, class_prompt(model.class_word), trained_at)
        before_prefix = report_before_prefix(self.engine.key, class_prompt(model.class_word), trained_at)
        ckpt_prefix = checkpoint_prefix(job.id)
        checkpoint_dir = self.cache.work_path(ckpt_prefix)
        # Another host may have trained this job up to a checkpoint before it died.
        await checkpoint_sync.restore(self.store.blobs, ckpt_prefix, checkpoint_dir)
        loop = asyncio.get_running_loop()

        def upload_checkpoint(folder: Path) -> None:  # on the GPU thread: the step waits for its upload
            asyncio.run_coroutine_threadsafe(checkpoint_sync.upload(self.store.blobs, ckpt_prefix, folder),
                                             loop).result()

        spec = TrainSpec(
            photos=photo_set.images,
            class_word=model.class_word,
            token=token,
            output_dir=self.cache.work_path(model_prefix(model.id)),
            prior=prior,
            class_image_dir=await self.cache.pull_folder(class_prefix) if use_class_images else None,
            num_class_images=num_class,
            before_dir=await self.cache.pull_folder(before_prefix),
            sample_steps=self.settings.draw_steps,  # samples and report card: DRAW_STEPS when set, else the family's
            resolution=trained_at,
            checkpoint_dir=checkpoint_dir,
            on_checkpoint=upload_checkpoint,
            steps=p.steps or self.settings.train_steps,
            checkpoint_every=self.options.checkpoint_every,
            device=self.settings.device,
        )
        if lighter:
            spec = replace(spec, gradient_checkpointing=True)
        try:
            result, card_path, drift = await self.gpu.run_long(self.engine.train, spec, run.on_progress,
                                                               run.should_stop)
        finally:
            if use_class_images:
                await self.cache.push_folder(class_prefix)
            await self.cache.push_folder(before_prefix)
        prefix = model_prefix(model.id)
        weights = await self.cache.publish(f"{prefix}/lora.safetensors", result.weights_path)
        kohya = await self.cache.publish(f"{prefix}/lora_kohya.safetensors", result.kohya_path)
        samples = [await self.cache.publish(f"{prefix}/{Path(s).name}", s) for s in result.sample_paths]
        card = await self.cache.publish(f"{prefix}/report_card.png", card_path)
        return TrainResult(  # the model is made ready with it, in the job's completion
            model_id=model.id,
            token=token,
            class_word=model.class_word,
            weights_path=weights,
            kohya_path=kohya,
            sample_paths=samples,
            steps=result.steps,
            seconds=result.seconds,
            resumed_from=result.resumed_from,
            rejected_photos=[r.reason for r in photo_set.rejected],
            report_card_path=card,
            class_drift=round(drift, 4),
            drift_warning=drift_warning(drift),
            params=result.params,
        )


def _png(image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def open_cache(store, settings) -> BlobCache:
    """ENGINE_CACHE_DIR (default DATA_DIR/cache/<host>), bounded by ENGINE_CACHE_MB."""
    folder = getattr(settings, "engine_cache_dir", None) or default_cache_dir(store.files.root)
    megabytes = getattr(settings, "engine_cache_mb", 20_000)
    return BlobCache(store.blobs, folder, megabytes * 1024 * 1024)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def serve_forever(settings, options: WorkerOptions) -> None:
    from storage import Storage

    base = settings.require_base_model()
    engine = await asyncio.to_thread(Engine.load, base, settings.device)
    log.info("base model %s loaded on %s", base, engine.runtime.device)
    store = await Storage.open(settings.data_dir, database_url=settings.database_url, blob_url=settings.blob_url)
    info = engine.info(settings.draw_steps)
    await store.engines.publish(options.worker_id, info)
    worker = Worker(store, settings, engine, options)
    telemetry = EngineTelemetry(store, options.worker_id, info.family, str(engine.runtime.device))
    telemetry.instrument(worker)
    await telemetry.start(settings.metrics_host, settings.engine_metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await telemetry.stop()
        await store.close()


def run_worker(settings, args) -> int:
    options = WorkerOptions(
        worker_id=args.worker_id or default_worker_id(),
        lease_s=args.lease_s,
        poll_s=args.poll_s,
        checkpoint_every=args.checkpoint_every,
        once=args.once,
    )
    asyncio.run(serve_forever(settings, options))
    return 0
