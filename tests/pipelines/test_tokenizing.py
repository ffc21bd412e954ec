"""TokenizeRecords on the DirectRunner: a huge record among short ones comes out truncated,
with the first windows of its whole text, counted in the ``truncated`` metric."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that

from flaxmodel.inference.tokenizer import TextEncoder
from pipelines.metrics import NAMESPACE
from pipelines.records import Record
from pipelines.tokenizing import TokenizeRecords
from tests.fixtures import SHORT_TEXTS

MAX_LENGTH, STRIDE, MAX_WINDOWS = 32, 8, 4
HUGE_TEXT = " ".join(SHORT_TEXTS) * 2000  # 340 kB, one line


def _record(name: str, text: str) -> Record:
    return Record(name, "f", 0, text, {})


@pytest.mark.parametrize("architecture", ["bert", "roberta"])
def test_a_huge_record_gets_the_first_windows_of_its_whole_text(tiny_checkpoint, architecture):
    folder = str(tiny_checkpoint(architecture))
    records = [_record("short", SHORT_TEXTS[1]), _record("huge", HUGE_TEXT), _record("long", " ".join(SHORT_TEXTS))]
    encoder = TextEncoder.from_folder(folder, MAX_LENGTH)
    whole = encoder.encode_windows([r.text for r in records], STRIDE, max_windows=10**6)
    # Only what the check needs, since Beam pickles it.
    expected = {r.id: (r, w.ids[:MAX_WINDOWS], w.num_tokens) for r, w in zip(records, whole)}
    specials = len(encoder.prefix) + len(encoder.suffix)

    def check(items) -> None:
        by_id = {item.record.id: item for item in items}
        assert sorted(by_id) == ["huge", "long", "short"]
        for name, item in by_id.items():
            record, windows, num_tokens = expected[name]
            assert item.record == record and item.windows == windows
            assert item.truncated == (name == "huge")
            if item.truncated:
                # Tokens of the prefix tokenized: past the windows, far short of the whole text.
                assert MAX_WINDOWS * (MAX_LENGTH - specials) < item.num_tokens < num_tokens // 100
            else:
                assert item.num_tokens == num_tokens

    pipeline = beam.Pipeline()
    tokenized = (
        pipeline
        | beam.Create(records, reshuffle=False)
        | beam.ParDo(TokenizeRecords(folder, MAX_LENGTH, STRIDE, MAX_WINDOWS))
    )
    assert_that(tokenized, check)
    result = pipeline.run()
    result.wait_until_finish()
    (counter,) = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name("truncated"))["counters"]
    assert counter.committed == 1
