"""Tiny random pipelines of the Qwen-based families, built offline: FLUX.2 [klein], Z-Image and Qwen-Image.

Shaped like klein at toy widths: a Qwen3 causal LM deep enough for the pipeline's hidden layers 9, 18 and 27, a
byte-level BPE tokenizer in Qwen2's layout (its vocabulary and merges learnt here from the identifier pool and the
prompt words tests use, each a single token with and without its leading space) with Qwen3's chat template, the
FLUX.2 VAE with its batch-norm statistics, and a one-double-block, one-single-block FLUX.2 transformer.
Model-index `is_distilled` is true, like FLUX.2-klein-4B. Z-Image's shares the tokenizer; Qwen-Image's learns
its system turn's words too, so that turn is 34 tokens as with Qwen's real tokenizer (the pipeline drops 34), over
a 2-layer Qwen2.5-VL and the smallest 3D causal VAE. Their pictures are noise.
"""

from __future__ import annotations

from engine.tokens import COMMON_PROMPT_WORDS, IDENTIFIER_POOL

# Qwen3's chat template, reduced to what Flux2KleinPipeline uses: one user turn, the assistant turn opened, and the
# empty think block Qwen3 writes when thinking is off.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
TEXT_WIDTH = 32
TEXT_LAYERS = 28  # hidden_states[27] must exist: the pipeline stacks layers 9, 18 and 27


def tiny_qwen_tokenizer(words=None):
    """Qwen2's tokenizer class (byte-level BPE, Qwen's pre-tokenizer) over a vocabulary learnt from `words`."""
    import json

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    words = sorted(set(words or (*IDENTIFIER_POOL, *COMMON_PROMPT_WORDS, "user", "assistant")))
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    # Each word alone (no leading space) and in a sentence (with one): BPE merges both into single tokens.
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    learner.train_from_iterator([" ".join(words), *words, "\n\n"], trainer)
    model = json.loads(learner.to_str())["model"]
    vocab = dict(model["vocab"])
    for token in SPECIAL_TOKENS:
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", model_max_length=131072)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _tiny_qwen3(tokenizer):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=TEXT_LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=1024, tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    ))


def _tiny_vae(resolution: int):
    import torch
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2(
        block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, layers_per_block=1, norm_num_groups=16,
        sample_size=resolution,
    )
    # As the other tiny VAEs: a random encoder's log-variance would drown the mean; pin it near zero variance.
    half = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(-30.0)
    return vae


def build_tiny_flux2_klein(resolution: int):
    """The tiny Flux2KleinPipeline, in memory (the caller seeds torch and saves it)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel

    tokenizer = tiny_qwen_tokenizer()
    text_encoder = _tiny_qwen3(tokenizer)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=3 * TEXT_WIDTH, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    # klein's scheduler: dynamic shifting, the pipeline hands it an empirical `mu` per resolution and step count.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    return Flux2KleinPipeline(scheduler=scheduler, vae=_tiny_vae(resolution), text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer, is_distilled=True)


def build_tiny_z_image(vae):
    """The tiny ZImagePipeline: the same Qwen tokenizer, a 2-layer Qwen3Model, FLUX.1's kind of VAE (`vae`)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = tiny_qwen_tokenizer()
    text_encoder = Qwen3Model(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    ))
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=vae.config.latent_channels, dim=32, n_layers=1,
        n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=TEXT_WIDTH, axes_dims=[4, 6, 6],
    )
    # Z-Image's scheduler: a static shift of 3 (ZImagePipeline passes `mu`, which a static shift ignores).
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)
    return ZImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)


# The words of QwenImagePipeline's system turn ("Describe the image by detailing the color, shape, …"): each one
# token, so the turn reads as 34 tokens, as Qwen's own tokenizer reads it (engine.qwen_image.check_template).
QWEN_IMAGE_SYSTEM_WORDS = ("system", "Describe", "the", "image", "by", "detailing", "color", "shape", "size",
                           "texture", "quantity", "text", "spatial", "relationships", "of", "objects", "and",
                           "background")


def tiny_qwen_image_tokenizer():
    """The tiny Qwen tokenizer with the system turn's words learnt too (its ids fit Qwen2.5-VL's embedding)."""
    return tiny_qwen_tokenizer((*IDENTIFIER_POOL, *COMMON_PROMPT_WORDS, "user", "assistant", *QWEN_IMAGE_SYSTEM_WORDS))


def build_tiny_qwen_image(resolution: int):
    """The tiny QwenImagePipeline, in memory: a 2-layer Qwen2.5-VL, a one-block transformer, a 3D VAE of factor 4."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from engine.qwen_image import check_template

    tokenizer = tiny_qwen_image_tokenizer()
    text_encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": TEXT_WIDTH, "intermediate_size": 2 * TEXT_WIDTH,
                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                     "max_position_embeddings": 2048, "pad_token_id": tokenizer.pad_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None,
                     # multimodal rotary sections (time, height, width) summing to half the 8-wide heads
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": TEXT_WIDTH},
    ))
    # Three levels, one temporal downsampling: latents a quarter of the picture's side, like the other tiny VAEs.
    latent = 4
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=latent, dim_mult=[1, 2, 2], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.1, -0.2, 0.3, 0.0],
                                 latents_std=[1.5, 0.8, 1.2, 1.0])
    with torch.no_grad():  # as the other tiny VAEs: near-zero posterior variance, or noise drowns the mean
        vae.quant_conv.weight[latent:].zero_()
        vae.quant_conv.bias[latent:].fill_(-30.0)
    vae.register_to_config(sample_size=resolution)  # the native side (the real VAE records none)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * latent, out_channels=latent, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, axes_dims_rope=(4, 6, 6),
    )
    # Qwen-Image's scheduler_config.json: dynamic shifting with an exponential time shift, a terminal sigma of 0.02.
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
        base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    )
    pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                             transformer=transformer)
    check_template(tokenizer, pipe.prompt_template_encode, pipe.prompt_template_encode_start_idx)
    return pipe
