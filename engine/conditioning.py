"""What the denoiser reads about a prompt, per family, computed the way diffusers' own pipelines compute it.

  SD1.x/SD2.x  the text encoder's last hidden state (StableDiffusionPipeline.encode_prompt, clip_skip None);
  SDXL         both encoders' penultimate hidden states side by side, plus the second encoder's pooled projection
               as `text_embeds` (StableDiffusionXLPipeline.encode_prompt; the recipe's encode_prompt);
  FLUX.1       T5's last hidden state as the sequence, CLIP's pooled output as `pooled_projections`, and zero
               `txt_ids` (FluxPipeline.encode_prompt; the recipe's encode_prompt);
  FLUX.2       Qwen3's layers 9, 18 and 27 side by side, with per-token `text_ids` (engine.flux2);
  Z-Image      Qwen3's second-to-last layer, one unpadded tensor per prompt (engine.z_image);
  Qwen-Image   Qwen2.5-VL's last layer past the template's system turn, zero-padded with a mask (engine.qwen_image).
Token counts measure what the model really reads: CLIP reads 75 text tokens, FLUX's T5 its max_sequence_length
minus the closing </s> (512 for dev, 256 for schnell).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.detection import family_of
from engine.families import Family


@dataclass
class PromptEmbeds:
    """Batch-first conditioning tensors by the name the denoiser takes them under."""

    tensors: dict[str, Any]

    def rows(self, count: int) -> PromptEmbeds:
        """The first `count` prompts (txt_ids is per sequence position, not per prompt, and stays whole)."""
        return PromptEmbeds({k: (v if k == "txt_ids" else v[:count]) for k, v in self.tensors.items()})

    def detached(self) -> PromptEmbeds:
        return PromptEmbeds({k: ([t.detach() for t in v] if isinstance(v, list) else v.detach())
                             for k, v in self.tensors.items()})

    def __getitem__(self, name: str):
        return self.tensors[name]

    def get(self, name: str, default=None):
        return self.tensors.get(name, default)


# The families whose conditioning, training step and export names live in a module of their own. Each offers
# tokenize, encode, count_tokens, noise_shape, its export copy, and its step as noise() and predict() apart
# (engine.objectives.Objective), which output preservation needs.
FAMILY_MODULES = {"flux2": "engine.flux2", "z-image": "engine.z_image", "qwen-image": "engine.qwen_image"}


def _module(family: Family):
    import importlib

    return importlib.import_module(FAMILY_MODULES[family.architecture])


def max_sequence_length(family: Family) -> int:
    """FLUX's T5 positions (FluxPipeline's max_sequence_length): text tokens plus the closing </s>."""
    return family.prompt_tokens + 1


def tokenize(pipe, prompts: list[str]) -> dict[str, Any]:
    """Token ids per tokenizer, padded and truncated exactly as the family's pipeline does."""
    family = family_of(pipe)
    if family.architecture in FAMILY_MODULES:
        return _module(family).tokenize(pipe, prompts)
    ids = {}
    for name in ("tokenizer", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if tok is None:
            continue
        length = max_sequence_length(family) if (family.is_flux and name == "tokenizer_2") else tok.model_max_length
        ids[name] = tok(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    return ids


def encode(pipe, ids: dict[str, Any]) -> PromptEmbeds:
    """Run the text encoders on token ids (with gradients if their LoRA is training)."""
    import torch

    family = family_of(pipe)
    if family.architecture in FAMILY_MODULES:
        return PromptEmbeds(_module(family).encode(pipe, ids))
    if family.is_flux:
        clip = pipe.text_encoder(ids["tokenizer"].to(pipe.text_encoder.device), output_hidden_states=False)
        t5 = pipe.text_encoder_2(ids["tokenizer_2"].to(pipe.text_encoder_2.device), output_hidden_states=False)[0]
        txt_ids = torch.zeros(t5.shape[1], 3, device=t5.device, dtype=t5.dtype)
        return PromptEmbeds({"encoder_hidden_states": t5, "pooled_projections": clip.pooler_output,
                             "txt_ids": txt_ids})
    if family.name == "sdxl":
        hidden, pooled = [], None
        for encoder, key in ((pipe.text_encoder, "tokenizer"), (pipe.text_encoder_2, "tokenizer_2")):
            out = encoder(ids[key].to(encoder.device), output_hidden_states=True)
            if out[0].ndim == 2:  # CLIPTextModelWithProjection: text_embeds first
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return PromptEmbeds({"encoder_hidden_states": torch.cat(hidden, dim=-1), "text_embeds": pooled})
    return PromptEmbeds({"encoder_hidden_states": pipe.text_encoder(ids["tokenizer"].to(pipe.text_encoder.device))[0]})


def encode_prompts(pipe, prompts: list[str]) -> PromptEmbeds:
    return encode(pipe, tokenize(pipe, prompts))


def count_tokens(pipe, text: str) -> tuple[int, int]:
    """(text tokens of `text`, how many the model reads) with the tokenizer that carries the prompt."""
    family = family_of(pipe)
    if family.architecture in FAMILY_MODULES:
        return _module(family).count_tokens(pipe, text)
    if family.is_flux:
        tok = pipe.tokenizer_2
        return len(tok(text, add_special_tokens=False).input_ids), family.prompt_tokens
    tok = pipe.tokenizer
    return len(tok(text, truncation=False, add_special_tokens=False).input_ids), tok.model_max_length - 2


def prompt_tokenizers(pipe) -> list[Any]:
    """Every tokenizer that reads a prompt for this model (FLUX.1: CLIP and T5; SDXL: both CLIPs; FLUX.2 and
    Z-Image: Qwen's), the ones an identifier must be rare and short for."""
    return [tok for tok in (getattr(pipe, name, None) for name in ("tokenizer", "tokenizer_2")) if tok is not None]


def identifier_pool(pipe) -> list[str]:
    """The identifier pool checked against the tokenizers shipped with this model, best first (engine.tokens)."""
    from engine.tokens import pool_for

    return pool_for(prompt_tokenizers(pipe))
