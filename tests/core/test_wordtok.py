"""The science world's word-level tokenizer: lossless on the world's texts, formulas split into element
symbols and counts, numbers whole, unknown words mapped to <|unk|>, same chat rendering as the tiny models."""

import pytest

from opcod_core.anchoring import TutorTemplate
from opcod_core.data.sciworld import sciworld_items
from opcod_core.models import render_prompt
from opcod_core.prompts import rollout_messages
from opcod_core.wordtok import UNK, build_word_tokenizer, world_corpus


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(world_corpus("sciworld", TutorTemplate()))


def test_round_trip_and_pieces(tok):
    items = sciworld_items()
    for it in items[::7]:
        for text in (it.question, f"{it.meta['worked']} Answer: {it.gold}", it.meta["hint"]):
            ids = tok.encode(text, add_special_tokens=False)
            assert tok.decode(ids) == text
            assert tok.convert_tokens_to_ids(UNK) not in ids
    pieces = tok.convert_ids_to_tokens(tok.encode(" Si2Br2 has 22.", add_special_tokens=False))
    assert pieces == [" Si", "2", "Br", "2", " has", " 22", "."]


def test_unknown_word_and_chat_template(tok):
    ids = tok.encode(" zyzzyva", add_special_tokens=False)
    assert ids == [tok.convert_tokens_to_ids(UNK)]
    it = sciworld_items(["physics"])[0]
    ids = render_prompt(tok, rollout_messages(it.question, [], [], "numeric"))
    assert ids[0] == tok.bos_token_id and tok.decode(ids).endswith("<|assistant|>")
