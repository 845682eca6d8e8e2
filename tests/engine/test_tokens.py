"""The identifier pool: single tokens of the loaded tokenizer, never shared between one owner's models."""

from __future__ import annotations

import pytest

from engine.tokens import IDENTIFIER_POOL, NoFreeToken, pick_token, usable_pool


def test_the_tiny_sd1_tokenizer_offers_the_pool_words_it_holds_in_pool_order(session_pipe):
    # The SD1 tiny vocabulary is frozen (engine.tiny_model.TINY_SD1_WORDS); of the real pool it holds sks and ohwx.
    # The whole pool against CLIP's real vocabulary: tests/engine/test_clip_vocabulary.py.
    tok = session_pipe.tokenizer
    pool = usable_pool(tok)
    assert pool[:2] == ["sks", "ohwx"]
    assert all(len(tok.tokenize(word)) == 1 for word in pool)
    assert [w for w in IDENTIFIER_POOL if w in pool] == pool


def test_a_word_split_into_pieces_is_left_out_of_the_pool(session_pipe):
    pool = usable_pool(session_pipe.tokenizer, ["sks", "qqqzzzxxy", "zwx"])
    assert pool == ["sks", "zwx"]


def test_two_models_of_one_owner_never_share_a_token(session_pipe):
    pool = usable_pool(session_pipe.tokenizer)
    in_use: set[str] = set()
    for _ in range(len(pool)):
        token = pick_token(pool, in_use)
        assert token not in in_use
        in_use.add(token)
    assert in_use == set(pool)
    with pytest.raises(NoFreeToken):
        pick_token(pool, in_use)


def test_another_owner_gets_sks_again():
    assert pick_token(IDENTIFIER_POOL, {"sks", "zwx"}) == "ohwx"
    assert pick_token(IDENTIFIER_POOL, set()) == "sks"


def test_flux_identifiers_are_checked_against_t5_too_and_a_word_t5_splits_comes_last():
    from engine.single_file import clip_tokenizer
    from engine.tiny_families import tiny_t5_tokenizer
    from engine.tokens import pieces_in_prompt, pool_for

    clip = clip_tokenizer()
    t5 = tiny_t5_tokenizer(words=[w for w in IDENTIFIER_POOL if w not in ("sks", "phol")] + ["a"])
    assert pieces_in_prompt(t5, "sks") > 1 and pieces_in_prompt(clip, "sks") == 1  # T5 splits it, CLIP does not
    pool = pool_for([clip, t5])
    assert pool[0] == "ohwx"
    assert set(pool[-2:]) == {"sks", "phol"}
    assert pool_for([clip]) == list(IDENTIFIER_POOL)  # SD: CLIP alone, the pool as it stands


def test_a_qwen_tokenizer_is_asked_about_the_word_as_it_stands_in_a_prompt(tiny_family_dir, family_pipe):
    from engine.conditioning import identifier_pool
    from engine.tiny_flux2 import tiny_qwen_tokenizer
    from engine.tokens import pieces_in_prompt, pool_for

    qwen = tiny_qwen_tokenizer(words=["a", "ohwx"])  # "ohwx" alone and after a space are single tokens, "sks" not
    assert pieces_in_prompt(qwen, "ohwx") == 1 and pieces_in_prompt(qwen, "sks") > 1
    assert pool_for([qwen])[0] == "ohwx"
    assert identifier_pool(family_pipe("flux2-klein"))[:2] == ["sks", "ohwx"]  # its tokenizer holds the pool
