"""CLIP's real tokenizer ships with the engine, and the identifier pool is rare single tokens of it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from engine.tokens import COMMON_PROMPT_WORDS, IDENTIFIER_POOL, usable_pool

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_DIR = REPO / "engine" / "configs" / "clip_tokenizer"
# Merges are learnt in frequency order, so a token's id is its rarity rank: "dog" is 1929, "photo" 1125. Every
# identifier sits among the last ~5 % of CLIP's merges (sks is 48136 of 49408).
RARE_FROM = 47_000


@pytest.fixture(scope="module")
def clip():
    from engine.single_file import clip_tokenizer

    return clip_tokenizer()


def test_the_shipped_tokenizer_is_clips_with_its_known_ids(clip):
    assert len(clip) == 49408
    assert (clip.bos_token_id, clip.eos_token_id) == (49406, 49407)
    assert clip("a photo of sks dog").input_ids == [49406, 320, 1125, 539, 48136, 1929, 49407]
    assert clip.tokenize("sks") == ["sks</w>"]


def test_openclip_families_pad_with_the_exclamation_mark_token():
    from engine.families import get_family
    from engine.single_file import family_tokenizers

    sd2 = family_tokenizers(get_family("sd2-v"))["tokenizer"]
    first, second = (family_tokenizers(get_family("sdxl"))[k] for k in ("tokenizer", "tokenizer_2"))
    assert (sd2.pad_token, sd2.pad_token_id) == ("!", 0)
    assert (first.pad_token_id, second.pad_token_id) == (49407, 0)
    padded = sd2("a dog", padding="max_length", max_length=77).input_ids
    assert padded[:4] == [49406, 320, 1929, 49407] and set(padded[4:]) == {0}


def test_vocab_json_is_exactly_what_the_documented_construction_gives_from_merges_txt():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from derive_clip_tokenizer import derive
    finally:
        sys.path.pop(0)
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + 48894
    merges = [tuple(line.split()) for line in lines[1:]]
    assert derive(merges) == json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert "MIT" in (TOKENIZER_DIR / "LICENSE").read_text()


def test_every_identifier_is_one_rare_clip_token_and_not_a_prompt_word(clip):
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(set(IDENTIFIER_POOL)) == len(IDENTIFIER_POOL) >= 20
    for word in IDENTIFIER_POOL:
        assert re.fullmatch("[a-z]{3,4}", word), word
        assert clip.tokenize(word) == [word + "</w>"], word
        assert vocab[word + "</w>"] >= RARE_FROM, (word, vocab[word + "</w>"])
        assert word not in COMMON_PROMPT_WORDS
        # Still one token inside a prompt, where it must bind: "a photo of <token> dog".
        assert clip.tokenize(f"a photo of {word} dog") == ["a</w>", "photo</w>", "of</w>", word + "</w>", "dog</w>"]
    for common in ("dog", "photo", "man", "red", "house"):
        assert vocab[common + "</w>"] < 10_000  # the measure separates words from rare tokens
    assert usable_pool(clip) == list(IDENTIFIER_POOL)
    assert IDENTIFIER_POOL[:2] == ("sks", "ohwx")  # the community's usual two come first
