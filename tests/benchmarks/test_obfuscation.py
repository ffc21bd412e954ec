"""``benchmarks.obfuscation``: the key word a post's hate rests on, disguised, and how many posts stay hate."""

from __future__ import annotations

import numpy as np

from benchmarks import obfuscation


def _hate_while(word: str):
    # A stand-in model: P(hate) is high exactly while the text still holds `word`.
    return lambda texts: np.array([0.9 if word in text else 0.1 for text in texts])


def test_the_key_word_is_the_one_whose_deletion_lowers_hate_most():
    texts = ["they are vermin and they know it", "no long words", "ok"]
    spans = obfuscation.key_words(_hate_while("vermin"), texts)
    assert texts[0][slice(*spans[0])] == "vermin"
    assert texts[1][slice(*spans[1])] in {"long", "words"}  # a tie: deleting either changes nothing
    assert spans[2] is None


def test_survival_counts_the_disguised_posts_still_labelled_hate():
    texts = ["they are vermin", "they are vermin too"]
    spans = obfuscation.key_words(_hate_while("vermin"), texts)

    def margin(texts):  # >= 0: labelled hate
        return _hate_while("vermin")(texts) - 0.5

    spaced = obfuscation.survival(margin, texts, spans, obfuscation.DISGUISES["spaced"])
    assert spaced["texts"] == ["they are v e r m i n", "they are v e r m i n too"]
    assert (spaced["rows"], spaced["still_hate"]) == (2, 0.0)
    assert obfuscation.survival(margin, texts, spans, obfuscation.DISGUISES["repeated"])["still_hate"] == 1.0
    assert obfuscation.DISGUISES["leetspeak"]("vermins") == "v3rm1n5"
