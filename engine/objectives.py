"""The training objective of each family: how a step's latents are noised, what the model must predict, and the loss.

  epsilon / v-prediction (SD1.x, SD2.x, SDXL): DDPM noising at a uniform integer timestep; the target is the noise
      or the velocity per the scheduler's prediction_type (train_dreambooth_lora*.py: `noise_scheduler.add_noise`,
      `get_velocity`); SDXL's UNet also takes `text_embeds` and `time_ids` (original size, crop top-left, target
      size: the recipe's compute_time_ids).
  flow matching (FLUX.1): x_t = (1 - σ) x_0 + σ ε at a timestep drawn by the recipe's density
      (compute_density_for_timestep_sampling, weighting scheme "none" = uniform) from the scheduler's own training
      timesteps (so a static `shift` in its config applies, a dynamic one does not, as in the recipe); the target
      is ε - x_0, weighted by compute_loss_weighting_for_sd3; latents are (z - shift_factor) · scaling_factor,
      packed 2x2 for the transformer, with the guidance embedding for dev (train_dreambooth_lora_flux.py).
  FLUX.2 [klein], Z-Image, Qwen-Image: the same two pieces, noise() and predict(), in their family module
      (engine.conditioning.FAMILY_MODULES). Every family's step comes apart so, which output preservation needs.
Everything random about a step comes from (seed, step), so a resumed run repeats the same steps bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.base_model import autocast  # with the runtime it reads
from engine.families import Family

# The recipe's defaults for the density of the "logit_normal" and "mode" schemes (train_dreambooth_lora_flux.py).
LOGIT_MEAN, LOGIT_STD, MODE_SCALE = 0.0, 1.0, 1.29


@dataclass
class EncodedImages:
    """VAE posteriors of a set of pictures (mean and std), so each step can draw a fresh latent cheaply."""

    mean: Any
    std: Any

    def __len__(self) -> int:
        return int(self.mean.shape[0])


@dataclass
class StepBatch:
    latents: Any  # [B, C, h, w] on CPU, float32, unscaled VAE latents; row 0 the instance, row 1 the class example
    noise: Any
    timesteps: Any  # integer timestep indices for DDPM; indices into the flow scheduler's training timesteps
    picks: list[int]  # which picture of each set was drawn (row 0: instance photo, row 1: class image)


def _permutation(n: int, seed: int):
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def step_batch(step: int, seed: int, instance: EncodedImages, classes: EncodedImages | None, timesteps: int,
               family: Family | None = None) -> StepBatch:
    """Everything random about one step comes from (seed, step): a resumed run repeats the same steps."""
    import torch

    def pick(images: EncodedImages, salt: int) -> int:
        n = len(images)
        epoch, offset = divmod(step, n)
        return int(_permutation(n, seed * 7919 + salt * 104729 + epoch)[offset])

    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    chosen = [(instance, pick(instance, 1))]
    if classes is not None:
        chosen.append((classes, pick(classes, 2)))
    latents = torch.stack(
        [imgs.mean[i] + imgs.std[i] * torch.randn(imgs.mean[i].shape, generator=gen) for imgs, i in chosen]
    )
    noise = torch.randn(latents.shape, generator=gen)
    if family is not None and family.is_flux:
        from diffusers.training_utils import compute_density_for_timestep_sampling

        u = compute_density_for_timestep_sampling(
            weighting_scheme=family.weighting_scheme, batch_size=latents.shape[0], logit_mean=LOGIT_MEAN,
            logit_std=LOGIT_STD, mode_scale=MODE_SCALE, generator=gen,
        )
        ts = (u * timesteps).long().clamp(0, timesteps - 1)
    else:
        ts = torch.randint(0, timesteps, (latents.shape[0],), generator=gen)
    return StepBatch(latents, noise, ts, [i for _, i in chosen])


class Objective:
    """One family's loss: `per_example(pipe, batch, embeds, time_ids)` gives one loss value per batch row."""

    def __init__(self, family: Family, scheduler_config: dict[str, Any], runtime) -> None:
        self.family = family
        self.runtime = runtime
        if family.is_flux:
            from diffusers import FlowMatchEulerDiscreteScheduler

            # A fresh scheduler holds the training timesteps and sigmas the recipe samples from (its
            # noise_scheduler_copy, never set_timesteps'd).
            self.scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
        else:
            from diffusers import DDPMScheduler

            self.scheduler = DDPMScheduler.from_config(scheduler_config)

    @property
    def num_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def prediction_type(self) -> str:
        return "flow_matching" if self.family.is_flux else str(self.scheduler.config.prediction_type)

    def per_example(self, pipe, batch: StepBatch, embeds, time_ids=None):
        """One loss value per batch row: the model's prediction against the family's target."""
        noised = self.noise(pipe, batch)
        return self.loss(self.predict(pipe, noised, embeds, time_ids), noised)

    def noise(self, pipe, batch: StepBatch) -> Noised:
        """The step's noisy model input and the target each row's prediction is held to."""
        from engine.conditioning import FAMILY_MODULES, _module

        if self.family.architecture in FAMILY_MODULES:  # FLUX.2, Z-Image, Qwen-Image: the step lives with its family
            return _module(self.family).noise(self, pipe, batch)
        if self.family.is_flux:
            return self._flow_noise(pipe, batch)
        return self._diffusion_noise(pipe, batch)

    def predict(self, pipe, noised: Noised, embeds, time_ids=None, rows: slice = slice(None)):
        """The denoiser's prediction for `rows` of the batch, in the target's space (FLUX's unpacked)."""
        from engine.conditioning import FAMILY_MODULES, _module

        if self.family.architecture in FAMILY_MODULES:
            return _module(self.family).predict(self, pipe, noised, embeds, rows)
        if self.family.is_flux:
            return self._flow_predict(pipe, noised, embeds, rows)
        return self._diffusion_predict(pipe, noised, embeds, time_ids, rows)

    def loss(self, prediction, noised: Noised):
        b = prediction.shape[0]
        loss = noised.weighting.float() * (prediction.float() - noised.target.float()) ** 2
        return loss.reshape(b, -1).mean(dim=1)

    def _diffusion_noise(self, pipe, batch: StepBatch) -> Noised:
        import torch

        device = self.runtime.device
        vae = pipe.vae.config
        latents = ((batch.latents - (vae.shift_factor or 0.0)) * vae.scaling_factor).to(device)
        noise = batch.noise.to(device)
        timesteps = batch.timesteps.to(device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        kind = self.prediction_type
        if kind == "v_prediction":
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        elif kind == "epsilon":
            target = noise
        else:
            raise ValueError(f"cannot train a model that predicts {kind!r}")
        return Noised(noisy, timesteps, target, torch.ones(1, device=device))

    def _diffusion_predict(self, pipe, noised: Noised, embeds, time_ids, rows: slice):
        device = self.runtime.device
        unet = pipe.unet
        kwargs = {}
        if time_ids is not None:
            kwargs["added_cond_kwargs"] = {
                "text_embeds": embeds["text_embeds"][rows].to(device, unet.dtype),
                "time_ids": time_ids[rows].to(device, unet.dtype),
            }
        with autocast(self.runtime):
            return unet(noised.model_input[rows].to(unet.dtype), noised.timesteps[rows],
                        embeds["encoder_hidden_states"][rows].to(unet.dtype), **kwargs).sample

    def _flow_noise(self, pipe, batch: StepBatch) -> Noised:
        vae = pipe.vae.config
        x0 = ((batch.latents - (vae.shift_factor or 0.0)) * vae.scaling_factor).to(self.runtime.device)
        return self.flow_noised(x0, batch.noise.to(self.runtime.device), batch.timesteps)

    def flow_noised(self, x0, noise, timestep_index) -> Noised:
        """Flow matching's step on latents `x0` (in the family's normalised space): x_t = (1 - σ) x_0 + σ ε at the
        scheduler's sigmas for `timestep_index`, the target ε - x_0, the family's loss weighting. Every flow family
        (FLUX.1 here; FLUX.2, Z-Image and Qwen-Image from their modules) noises so."""
        import torch
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        device = self.runtime.device
        index = timestep_index.cpu()
        timesteps = self.scheduler.timesteps[index].to(device)
        sigmas = self.scheduler.sigmas[index].to(device, torch.float32).view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * x0 + sigmas * noise
        weighting = compute_loss_weighting_for_sd3(weighting_scheme=self.family.weighting_scheme, sigmas=sigmas)
        return Noised(noisy, timesteps, noise - x0, weighting)

    def _flow_predict(self, pipe, noised: Noised, embeds, rows: slice):
        import torch
        from diffusers import FluxPipeline

        device = self.runtime.device
        transformer = pipe.transformer
        dtype = transformer.dtype
        noisy = noised.model_input[rows]
        b, c, h, w = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        image_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
        guidance = None
        if transformer.config.guidance_embeds:
            guidance = torch.full((b,), float(self.family.train_guidance or 1.0), device=device)
        with autocast(self.runtime):
            prediction = transformer(
                hidden_states=packed.to(dtype),
                timestep=(noised.timesteps[rows] / 1000).to(dtype),
                guidance=guidance,
                pooled_projections=embeds["pooled_projections"][rows].to(device, dtype),
                encoder_hidden_states=embeds["encoder_hidden_states"][rows].to(device, dtype),
                txt_ids=embeds["txt_ids"].to(device, dtype),
                img_ids=image_ids,
                return_dict=False,
            )[0]
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        return FluxPipeline._unpack_latents(prediction, height=h * factor, width=w * factor, vae_scale_factor=factor)


@dataclass
class Noised:
    """One step's noisy latents and what the model is held to: the family's target, weighted per row."""

    model_input: Any  # [B, C, h, w] scaled latents with noise, on the device
    timesteps: Any
    target: Any  # what each row's prediction is compared with; output preservation replaces the class row's
    weighting: Any  # broadcastable loss weight (FLUX's timestep weighting; ones for DDPM)


def sdxl_time_ids(geometries: list[tuple[int, int, int, int]], resolution: int):
    """SDXL's added `time_ids` per row: original (h, w), crop top-left (top, left), target (h, w) — the recipe's
    compute_time_ids(original_size, crops_coords_top_left) with target_size = (resolution, resolution)."""
    import torch

    rows = [[oh, ow, top, left, resolution, resolution] for oh, ow, top, left in geometries]
    return torch.tensor(rows, dtype=torch.float32)
