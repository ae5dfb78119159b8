"""Word-level tokenizer and tiny model for the science world (model reference ``tinyword:llama|qwen2``).

Why not the byte-level BPE of ``tiny:``: BPE trained on the world's texts merges whole formulas into
single tokens ("CO2" is one token if it is frequent), so a formula held out of training would be a
token the model has never seen, and numbers split unpredictably. Here text is cut by one regular
expression into pieces — ``<concept>``/``</concept>``, an element symbol or capitalised word, a
lower-case word, a whole number, one punctuation mark (each with its optional leading space), or a run
of whitespace — and each piece is one token. So "Si2Br" is always ``Si | 2 | Br``, "16" is one token
(single-digit arithmetic becomes a lookup the tiny model can learn), and the Fuse decoder concatenates
pieces back, so ``decode(encode(text)) == text`` for every text made of known pieces. A piece outside
the vocabulary (e.g. a word typed by a human) becomes ``<|unk|>``.

Measured on the science world's 1,343 items (MCQ version, 2026-11-25): the word-level vocabulary has 427
entries and splits every formula into symbols and counts; the ``tiny:`` byte-level BPE trained on the
same corpus (asked for 2,048, it learns 879) merged symbols and counts inside 156 of the 319 chemistry
formulas (e.g. "CO2" as one token). Prompt lengths are alike (81.3 vs 82.2 tokens on average), so the
choice is about what the tokens mean, not about speed.
"""

from __future__ import annotations

from opcod_core import models

PIECES = r"</?concept>| ?[A-Z][a-z]*| ?[a-z]+| ?\d+| ?[^\sA-Za-z\d]|\s+"
UNK = "<|unk|>"
# ~1.3M parameters at the science world's ~420-token vocabulary.
WORD_SIZE = {"hidden": 160, "layers": 4, "heads": 4, "intermediate": 448}


def build_word_tokenizer(corpus: list[str]):
    """A lossless word-level tokenizer over ``corpus``, with the tiny chat template and special tokens
    of ``models.build_tiny_tokenizer`` (so prompts render the same way)."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(PIECES), behavior="isolated")
    tok.decoder = decoders.Fuse()
    specials = list(models.SPECIAL_TOKENS) + [UNK]
    trainer = trainers.WordLevelTrainer(vocab_size=100_000, min_frequency=1, special_tokens=specials,
                                        show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    pad, bos, eos, user, assistant, system = models.SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad,
                                        unk_token=UNK, extra_special_tokens=[user, assistant, system],
                                        clean_up_tokenization_spaces=False, model_max_length=100_000)
    tokenizer.chat_template = models.TINY_CHAT_TEMPLATE
    tokenizer.init_kwargs[models._VERBATIM_KEY] = True
    return tokenizer


def world_corpus(source: str, template) -> list[str]:
    """Every text the run can show a model: the data source's texts plus the rendered rollout,
    self-teacher and tutor prompts of its items (and the sanitised-feedback wording)."""
    from opcod_core.anchoring import REDACTED, render_tutor_messages
    from opcod_core.tiny_corpus import tiny_corpus
    from opcod_core.data.sciworld import sciworld_corpus, sciworld_items
    from opcod_core.data.sciworld3 import sciworld3_corpus, sciworld3_items
    from opcod_core.prompts import format_choices, rollout_messages, teacher_messages

    if source not in ("sciworld", "sciworld3"):
        return tiny_corpus(template) + [REDACTED]
    v3 = source == "sciworld3"
    texts = list(sciworld3_corpus() if v3 else sciworld_corpus()) + [REDACTED, "Concept: ."]
    for item in (sciworld3_items() if v3 else sciworld_items()):
        labels, choices = list(item.labels), list(item.choices)
        msgs = rollout_messages(item.question, labels, choices, item.answer_type)
        msgs += teacher_messages(item.question, labels, choices, item.answer_type,
                                 solution=f"{item.meta['worked']} Answer: {item.gold}",
                                 feedback=f"Concept: {item.meta['concept']}. {item.meta['hint']}")
        tutor_msgs, prefill = render_tutor_messages(template, item.question, format_choices(labels, choices),
                                                    f"{item.meta['worked']} Answer: {item.gold}")
        texts += [m["content"] for m in msgs + tutor_msgs]
        texts.append(f"{prefill}{item.meta['concept']}</concept> {item.meta['hint']}{''.join(template.stop)}")
        if v3:
            texts.append(f"Concept: {item.meta['concept']}. {item.meta['corrupt_hint']}")
    texts += [f"Answer: {n}" for n in range(200 if v3 else 100)]
    return texts


def build_word_student(ref: str, seed: int, template, source: str):
    """``tinyword:<arch>`` -> (model, tokenizer), deterministic for ``seed``."""
    arch = ref.split(":", 1)[1] or "llama"
    tok = build_word_tokenizer(world_corpus(source, template))
    return models.build_tiny_model(tok, arch=arch, seed=seed, **WORD_SIZE), tok
