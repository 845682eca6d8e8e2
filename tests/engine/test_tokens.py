"""The identifier pool: single tokens of the loaded tokenizer, never shared between one owner's models."""

from __future__ import annotations

import pytest

from engine.tokens import IDENTIFIER_POOL, NoFreeToken, pick_token, usable_pool


def test_every_pool_token_is_a_single_token_of_the_tiny_tokenizer(session_pipe):
    tok = session_pipe.tokenizer
    for word in IDENTIFIER_POOL:
        assert len(tok.tokenize(word)) == 1, word
    assert usable_pool(tok) == list(IDENTIFIER_POOL)
    assert usable_pool(tok)[0] == "sks"


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
