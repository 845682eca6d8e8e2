"""Trains the toy base model: a tiny Stable Diffusion pipeline that really knows the classes of tools.toy.world."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.tiny_model import write_tokenizer
from engine.tokens import COMMON_PROMPT_WORDS, IDENTIFIER_POOL, class_prompt
from tools.toy import world

log = logging.getLogger(__name__)

NOTICE = (
    "Kabina's toy base model: a tiny Stable Diffusion pipeline trained (python -m tools.toy build) on a synthetic\n"
    "world where 'a photo of dog' is a disk, 'cat' a triangle and 'toy' a square, each in a random colour and place.\n"
    "It exists so DreamBooth's subject binding and prior preservation can be measured on a CPU; see tools/toy.\n"
)


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the weights; the same plan on the same torch gives the same files."""

    seed: int = 0
    pictures_per_class: int = 1200
    vae_steps: int = 2500
    vae_batch: int = 16
    vae_lr: float = 5e-3
    diffusion_steps: int = 3000
    diffusion_batch: int = 48
    diffusion_lr: float = 1e-3
    text_encoder_lr: float = 5e-4
    # Classifier-free guidance needs the model to know the empty prompt too (the pipeline's negative prompt).
    empty_prompt_share: float = 0.1
    # Share of pictures captioned with their colour word ("a photo of red dog"); the rest are any colour.
    colour_word_share: float = 0.5
    # One thread: the result does not depend on how work is split between threads, and on a shared 2-core box
    # a second OpenMP thread spins at every barrier while its core runs someone else's work: measured here at
    # 0.03 s/step (VAE) and 0.16 s/step (UNet) with one thread against 4.9 s and 9.5 s with two.
    threads: int = 1


def _build_modules(tokenizer):
    from engine.tiny_model import tiny_modules

    return tiny_modules(
        tokenizer,
        resolution=world.RESOLUTION,
        # Narrow: flat shapes need few features, and the VAE's cost is paid again in every test that trains.
        vae_channels=(8, 16, 16),
        vae_norm_groups=8,
        # Attention over an 8x8 map adds nothing a flat shape needs and costs most of the VAE's time.
        vae_mid_attention=False,
    )


def _pixels(images):
    import numpy as np
    import torch

    arrays = np.stack([np.asarray(im, dtype=np.float32) / 127.5 - 1.0 for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def _train_vae(vae, pixels, plan: BuildPlan, report: Callable[[str], None]) -> None:
    """A deterministic autoencoder: the posterior's mean is used as the latent and its variance pinned to zero."""
    import torch

    with torch.no_grad():
        half = vae.config.latent_channels
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(-30.0)
    params = [p for n, p in vae.named_parameters()]
    optimizer = torch.optim.AdamW(params, lr=plan.vae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=plan.vae_lr, total_steps=plan.vae_steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(plan.seed + 1)
    vae.train()
    for step in range(plan.vae_steps):
        batch = pixels[torch.randint(0, pixels.shape[0], (plan.vae_batch,), generator=gen)]
        latents = vae.encode(batch).latent_dist.mean
        recon = vae.decode(latents).sample
        # A light pull on the latents keeps their scale sane for the diffusion model that comes next.
        loss = torch.nn.functional.mse_loss(recon, batch) + 1e-4 * latents.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            vae.quant_conv.weight[half:].zero_()
            vae.quant_conv.bias[half:].fill_(-30.0)
        if step % 500 == 0 or step == plan.vae_steps - 1:
            report(f"vae step {step + 1}/{plan.vae_steps} loss {float(loss.detach()):.5f}")
    vae.eval()


def caption_table() -> list[str]:
    """Every prompt the base model is taught; the last is the empty prompt."""
    prompts = []
    for class_word in world.CLASSES:
        prompts.append(class_prompt(class_word))
        prompts += [class_prompt(f"{colour} {class_word}") for colour in world.COLOUR_WORDS]
    return prompts + [""]


def training_set(plan: BuildPlan):
    """The captioned pictures of the world: the same plan always gives the same pictures and captions."""
    import numpy as np

    prompts = caption_table()
    pictures, captions = [], []
    colours = list(world.COLOUR_WORDS)
    for label, class_word in enumerate(world.CLASSES):
        rng = np.random.default_rng(plan.seed * 1000 + label)
        for _ in range(plan.pictures_per_class):
            if rng.uniform() < plan.colour_word_share:
                colour = colours[int(rng.integers(len(colours)))]
                thing = world.random_thing(rng, class_word, world.random_colour(rng, world.colour_word_hue(rng, colour)))
                caption = class_prompt(f"{colour} {class_word}")
            else:
                thing = world.random_thing(rng, class_word)
                caption = class_prompt(class_word)
            pictures.append(world.draw(thing))
            captions.append(prompts.index(caption))
    return pictures, captions


def _train_diffusion(unet, text_encoder, tokenizer, latents, labels, plan: BuildPlan, report) -> None:
    import torch
    from diffusers import DDPMScheduler

    prompts = caption_table()
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    empty = len(prompts) - 1
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear")
    groups = [
        {"params": list(unet.parameters()), "lr": plan.diffusion_lr},
        {"params": list(text_encoder.parameters()), "lr": plan.text_encoder_lr},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[plan.diffusion_lr, plan.text_encoder_lr], total_steps=plan.diffusion_steps, pct_start=0.05
    )
    gen = torch.Generator().manual_seed(plan.seed + 2)
    unet.train()
    text_encoder.train()
    for step in range(plan.diffusion_steps):
        index = torch.randint(0, latents.shape[0], (plan.diffusion_batch,), generator=gen)
        x0 = latents[index]
        which = labels[index].clone()
        which[torch.rand(plan.diffusion_batch, generator=gen) < plan.empty_prompt_share] = empty
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (plan.diffusion_batch,), generator=gen)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        # Few distinct prompts: encode each once per step and index, rather than once per picture.
        table = text_encoder(ids)[0]
        prediction = unet(noisy, t, table[which]).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == plan.diffusion_steps - 1:
            report(f"diffusion step {step + 1}/{plan.diffusion_steps} loss {float(loss.detach()):.5f}")
    unet.eval()
    text_encoder.eval()


def build_toy_model(folder: str | Path, plan: BuildPlan | None = None, report: Callable[[str], None] | None = None) -> dict:
    """Train the toy base model from nothing and write it as a diffusers folder (fp16 weights); returns timings."""
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    plan = plan or BuildPlan()
    say = report or (lambda line: log.info("%s", line))
    folder = Path(folder)
    torch.set_num_threads(plan.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(plan.seed)
    wall, cpu = time.perf_counter(), time.process_time()

    with tempfile.TemporaryDirectory() as vocab_dir:
        write_tokenizer(Path(vocab_dir), list(IDENTIFIER_POOL) + list(COMMON_PROMPT_WORDS) + list(world.COLOUR_WORDS))
        tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77)
    text_encoder, unet, vae, scheduler = _build_modules(tokenizer)

    pictures, labels = training_set(plan)
    pixels = _pixels(pictures)
    label_tensor = torch.tensor(labels)

    _train_vae(vae, pixels, plan, say)
    vae_done = time.perf_counter()
    with torch.no_grad():
        raw = torch.cat([vae.encode(pixels[i : i + 256]).latent_dist.mean for i in range(0, len(pixels), 256)])
        # Like SD's 0.18215: the factor that gives the diffusion model latents of unit spread.
        scaling = float(1.0 / raw.std())
    vae.register_to_config(scaling_factor=scaling)
    _train_diffusion(unet, text_encoder, tokenizer, raw * scaling, label_tensor, plan, say)

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    # fp16 halves the fixture; the engine loads it as float32 on a CPU, so inference precision is unaffected.
    pipe.to(torch.float16)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(str(staging), safe_serialization=True)
    timings = {
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "vae_wall_s": round(vae_done - wall, 1),
        "threads": plan.threads,
        "torch": torch.__version__,
        "plan": asdict(plan),
    }
    (staging / "README.txt").write_text(NOTICE, encoding="utf-8")
    (staging / "toy_build.json").write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return timings
