"""A tiny, randomly initialised Stable Diffusion pipeline built offline (for tests, CI and demos)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from engine.tiny_common import NOTICE as NOTICE  # callers know both names from here
from engine.tiny_common import TINY_RESOLUTION as TINY_RESOLUTION
from engine.tokens import COMMON_PROMPT_WORDS

# The words the SD1 tiny model's vocabulary is built from, frozen as they were before the identifier pool was
# fixed against CLIP's real vocabulary: the SD1 tiny model (and every test figure measured on it) stays the same
# files. Its identifiers are the pool words it holds as single tokens (sks, ohwx); the other families' tiny models
# use CLIP's real tokenizer, which holds the whole pool.
TINY_SD1_WORDS: tuple[str, ...] = (
    "sks", "zwx", "ohwx", "pzk", "vkx", "qmz", "jxp", "tqw", "wbq", "xqh", "krz", "hjv",
    "bxq", "fzn", "yqv", "dkx", "gvz", "zmq", "wxj", "kqp", "jvw", "qzx", "xkv", "vzq",
    *COMMON_PROMPT_WORDS,
)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _byte_alphabet() -> list[str]:
    """The printable stand-ins byte-level BPE uses for the 256 byte values (the same table GPT-2 and CLIP use)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Split one lower-case word the way CLIP's BPE does: merge the best-ranked adjacent pair until none applies."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
        rank, _ = min(pairs)
        if rank == 1 << 30:
            break
        merged, i = [], 0
        best = min(pairs)[1]
        pair = (parts[best], parts[best + 1])
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def build_vocabulary(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style vocabulary and merge list in which every given word is a single token.

    Merges are only ever appended, so each round turns at least one split word into fewer pieces; the loop
    ends when every word is whole.
    """
    words = sorted({w.lower() for w in words if w})
    alphabet = _byte_alphabet()
    vocab_list = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for _ in range(10_000):
        changed = False
        for word in words:
            parts = _bpe(word, ranks)
            if len(parts) > 1:
                pair = (parts[0], parts[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                vocab_list.append(pair[0] + pair[1])
                changed = True
        if not changed:
            break
    vocab_list += [BOS, EOS]
    vocab = {}
    for token in vocab_list:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def write_tokenizer(folder: Path, words: Iterable[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocabulary(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def tiny_modules(
    tokenizer,
    *,
    resolution: int,
    vae_channels: tuple[int, int, int],
    vae_norm_groups: int,
    vae_mid_attention: bool = True,
):
    """The tiny SD architecture (text encoder, UNet, VAE, scheduler), randomly initialised in that order from
    torch's global generator: the tiny model and the toy world's base model share it, only the VAE's width differs.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,  # CLIP pools the hidden state at this id
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=resolution // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=vae_norm_groups,
        sample_size=resolution,
        mid_block_add_attention=vae_mid_attention,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return text_encoder, unet, vae, scheduler


def build_tiny_pipeline(folder: str | Path, seed: int = 0, family: str = "sd1"):
    """Write a tiny pipeline of `family` into `folder` and return it (CPU, float32); sd1 is the original one."""
    if family != "sd1":
        from engine.tiny_families import build_tiny_family

        return build_tiny_family(folder, family, seed=seed)
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    vocab_dir = folder / "_vocab"
    write_tokenizer(vocab_dir, TINY_SD1_WORDS)
    # transformers 5 ignores vocab_file= in the constructor; from_pretrained reads vocab.json + merges.txt.
    tokenizer = CLIPTokenizer.from_pretrained(str(vocab_dir), model_max_length=77)

    text_encoder, unet, vae, scheduler = tiny_modules(
        tokenizer,
        resolution=TINY_RESOLUTION,
        # Three blocks: latents are a quarter of the picture's side, which keeps CPU attention cheap.
        vae_channels=(16, 32, 32),
        vae_norm_groups=16,
    )
    with torch.no_grad():
        # A random encoder's log-variance is large enough to drown the mean; pin it near zero variance so
        # latents (and the images decoded from them) carry the picture rather than sampling noise.
        half = vae.config.latent_channels
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(-30.0)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    for leftover in vocab_dir.iterdir():
        leftover.unlink()
    vocab_dir.rmdir()
    (folder / "README.txt").write_text(NOTICE, encoding="utf-8")
    return pipe


def count_parameters(pipe) -> int:
    from engine.base_model import pipeline_modules

    return sum(p.numel() for m in pipeline_modules(pipe) for p in m.parameters())


def build_random_pipeline(config_dir: str | Path, device, dtype):
    """An in-memory pipeline with random weights shaped by a diffusers config folder (e.g. engine/configs/sd15).

    Used to measure speed and memory of a full-size model without any weights on disk; the tokenizer is our own
    small vocabulary, which changes nothing about the cost of a step.
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config_dir = Path(config_dir)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer(Path(tmp), TINY_SD1_WORDS)
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    te_config = CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder"))
    te_config.eos_token_id = tokenizer.eos_token_id
    te_config.bos_token_id = tokenizer.bos_token_id
    te_config.pad_token_id = tokenizer.pad_token_id
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(config_dir / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir / "vae")))
        text_encoder = CLIPTextModel(te_config)
    scheduler = PNDMScheduler.from_config(PNDMScheduler.load_config(str(config_dir / "scheduler")))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return pipe.to(device=device, dtype=dtype)
