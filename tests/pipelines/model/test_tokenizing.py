"""TokenizeBlocks on the DirectRunner: a huge record among short ones comes out truncated, with the
first windows of its whole text, and identical texts of a block are tokenized once."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from flaxmodel import Tokenizer, resolve_model
from pipelines.names import NAMESPACE
from flaxmodel.records import RecordBlock
from pipelines.model.tokenizing import TokenizeBlocks, distinct_texts
from tests.fixtures import SHORT_TEXTS

MAX_LENGTH, STRIDE, MAX_WINDOWS = 32, 8, 4
HUGE_TEXT = " ".join(SHORT_TEXTS) * 2000  # 340 kB, one line


def _block(texts: list[str]) -> RecordBlock:
    return RecordBlock("f", np.arange(len(texts)), [f"f:{i}" for i in range(len(texts))], texts, {})


def _counters(result) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    return {c.key.metric.name: c.committed for c in query["counters"]}


@pytest.mark.parametrize("architecture", ["bert", "roberta"])
def test_a_huge_record_gets_the_first_windows_of_its_whole_text(tiny_checkpoint, architecture):
    folder = str(tiny_checkpoint(architecture))
    texts = [SHORT_TEXTS[1], HUGE_TEXT, " ".join(SHORT_TEXTS), SHORT_TEXTS[1]]
    encoder = Tokenizer.from_folder(folder, MAX_LENGTH)
    whole = encoder.encode_windows(texts, STRIDE, max_windows=10**6)
    # Only what the check needs, since Beam pickles it.
    expected = [(w.ids[:MAX_WINDOWS], w.num_tokens) for w in whole]
    specials = len(encoder.prefix) + len(encoder.suffix)
    prefix, suffix = list(encoder.prefix), list(encoder.suffix)

    def check(items) -> None:
        (item,) = items
        assert item.records.texts == texts
        assert item.text_of.tolist() == [0, 1, 2, 0]  # the repeated short text is tokenized once
        windows = item.windows
        for record, (ids, num_tokens) in enumerate(expected):
            text = int(item.text_of[record])
            first, last = windows.window_offsets[text], windows.window_offsets[text + 1]
            got = [
                prefix + windows.tokens[s : s + n].tolist() + suffix
                for s, n in zip(windows.window_start[first:last], windows.window_length[first:last])
            ]
            assert got == ids
            assert bool(windows.truncated[text]) == (record == 1)
            if record == 1:
                # Tokens of the prefix tokenized: past the windows, far short of the whole text.
                assert MAX_WINDOWS * (MAX_LENGTH - specials) < windows.num_tokens[text] < num_tokens // 100
            else:
                assert windows.num_tokens[text] == num_tokens

    pipeline = beam.Pipeline()
    tokenized = (
        pipeline
        | beam.Create([_block(texts)], reshuffle=False)
        | beam.ParDo(TokenizeBlocks(resolve_model(folder, max_length=MAX_LENGTH), STRIDE, MAX_WINDOWS))
    )
    assert_that(tokenized, check)
    result = pipeline.run()
    result.wait_until_finish()
    counters = _counters(result)
    assert (counters["truncated"], counters["reused_texts"]) == (1, 1)


def test_distinct_texts_keep_first_appearance_order():
    texts, text_of = distinct_texts(["b", "a", "b", "c", "a"])
    assert texts == ["b", "a", "c"]
    assert text_of.tolist() == [0, 1, 0, 2, 1]


def test_every_block_of_a_bundle_comes_out_once_and_is_counted(tiny_checkpoint):
    # Each block is emitted with the next one (its tokenizer call overlaps the rest of the pipeline), the
    # bundle's last one at its end: none may be lost, doubled or counted on the wrong thread.
    folder = str(tiny_checkpoint("bert"))
    blocks = [_block([SHORT_TEXTS[i % len(SHORT_TEXTS)]] * (i + 1)) for i in range(5)]
    expected = sorted(tuple(block.texts) for block in blocks)

    def check(items) -> None:
        assert sorted(tuple(item.records.texts) for item in items) == expected
        for item in items:
            assert item.text_of.tolist() == [0] * len(item.records)
            assert len(item.windows.num_tokens) == 1

    pipeline = beam.Pipeline()
    tokenized = (
        pipeline
        | beam.Create(blocks, reshuffle=False)
        | beam.ParDo(TokenizeBlocks(resolve_model(folder, max_length=MAX_LENGTH), STRIDE, MAX_WINDOWS))
    )
    assert_that(tokenized, check)
    result = pipeline.run()
    result.wait_until_finish()
    assert _counters(result)["reused_texts"] == sum(range(5))
