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
