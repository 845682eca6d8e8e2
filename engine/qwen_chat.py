"""Qwen's chat template as the Qwen-based pipelines hand a prompt to their text encoder (FLUX.2, Z-Image, Qwen-Image).

FLUX.2 [klein] and Z-Image use the tokenizer's own chat template (one user turn, the assistant turn opened), with
thinking off (FLUX.2: an empty think block) or on (Z-Image), padded to 512 tokens. Qwen-Image writes the template
itself, with a system turn its pipeline later drops (engine.qwen_image). What the model reads of a prompt is the
512 positions less the template's own tokens, counted here the same way for all three.
"""

from __future__ import annotations

from typing import Any

MAX_SEQUENCE_LENGTH = 512  # Flux2KleinPipeline's and ZImagePipeline's max_sequence_length


def chat_text(tokenizer, prompt: str, *, thinking: bool) -> str:
    """The prompt as one user turn and an opened assistant turn, in the tokenizer's chat template."""
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=thinking)


def tokenize(tokenizer, prompts: list[str], *, thinking: bool) -> dict[str, Any]:
    """Token ids and attention mask of the prompts in the chat template, padded and cut to 512 tokens."""
    texts = [chat_text(tokenizer, p, thinking=thinking) for p in prompts]
    out = tokenizer(texts, return_tensors="pt", padding="max_length", truncation=True,
                    max_length=MAX_SEQUENCE_LENGTH)
    return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


def count_tokens(tokenizer, text: str, template_tokens: int, limit: int = MAX_SEQUENCE_LENGTH) -> tuple[int, int]:
    """(tokens of `text`, how many of them the model reads): the template's own tokens come off `limit`."""
    return len(tokenizer(text, add_special_tokens=False).input_ids), limit - template_tokens


def template_tokens(tokenizer, *, thinking: bool) -> int:
    """How many tokens the chat template adds around a prompt."""
    return len(tokenizer(chat_text(tokenizer, "", thinking=thinking), add_special_tokens=False).input_ids)
