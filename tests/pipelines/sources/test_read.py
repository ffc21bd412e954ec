"""Reading shards with Beam: ids and passthrough fields, and inputs refused before the run starts."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

import flaxmodel.records as formats
from pipelines.sources import ReadRecords, split_patterns
from pipelines.options import OptionError


def test_records_take_ids_and_fields_from_the_input(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"post": 1, "body": "hello", "lang": "en"}) + "\n")
    (tmp_path / "b.csv").write_text("post,body,lang\n2,bonjour,fr\n3,salut,\n")
    (tmp_path / "c.tsv").write_text("post\tbody\tlang\n4\thola, amigos\tes\n")
    spec = formats.FieldSpec(text_field="body", id_field="post", keep_fields=("lang",))
    with beam.Pipeline() as pipeline:
        records, dead = pipeline | ReadRecords([str(tmp_path / "*")], spec=spec)
        assert_that(
            records | beam.FlatMap(lambda block: zip(block.ids, block.texts, block.fields["lang"])),
            equal_to([("1", "hello", "en"), ("2", "bonjour", "fr"), ("3", "salut", ""), ("4", "hola, amigos", "es")]),
        )
        assert_that(dead, equal_to([]), label="NoDeadLetters")


def _transform_names(pipeline: beam.Pipeline) -> set[str]:
    return {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}


def test_the_direct_runner_reads_without_holding_every_record_in_a_shuffle(tmp_path):
    # Its in-memory shuffle would make a local run's memory grow with the input.
    (tmp_path / "a.txt").write_text("hello\n")
    direct = beam.Pipeline()
    _ = direct | ReadRecords([str(tmp_path / "*.txt")])
    assert not any("SpreadRecords" in name for name in _transform_names(direct))
    forced = beam.Pipeline()
    _ = forced | ReadRecords([str(tmp_path / "*.txt")], redistribute=True)
    assert any("SpreadRecords" in name for name in _transform_names(forced))


def test_input_patterns_may_be_repeated_or_comma_separated():
    assert split_patterns(["a/*.jsonl,b/*.csv", " c.txt "]) == ["a/*.jsonl", "b/*.csv", "c.txt"]


def test_a_glob_matching_no_file_fails_at_construction(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    with pytest.raises(OptionError, match=r"--input .*\*\.csv: matches no file"):
        ReadRecords([str(tmp_path / "*.jsonl"), str(tmp_path / "*.csv")])


def test_a_file_of_unknown_format_fails_at_construction_unless_the_format_is_given(tmp_path):
    (tmp_path / "posts.log").write_text("hello\n")
    with pytest.raises(OptionError, match="pass --format"):
        ReadRecords([str(tmp_path / "*")])
    ReadRecords([str(tmp_path / "*")], format="text")


def test_an_id_field_cannot_apply_to_plain_text(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    with pytest.raises(OptionError, match="--id_field"):
        ReadRecords([str(tmp_path / "a.txt")], spec=formats.FieldSpec(id_field="id"))
