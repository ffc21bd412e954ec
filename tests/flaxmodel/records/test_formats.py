"""Format parsers: what a user's odd-but-valid files become, and where bad records point to."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flaxmodel.records import formats
from flaxmodel.records import parse_blocks
from flaxmodel.records import DeadLetter, Record

SPEC = formats.FieldSpec(text_field="text", id_field="id", keep_fields=("lang", "n"), max_payload_bytes=8)


def _lines(data: bytes):
    return iter(io.BytesIO(data).readline, b"")


@pytest.mark.parametrize(
    "path, expected",
    [
        ("gs://b/x/posts.jsonl", "jsonl"),
        ("shard-0001.csv.gz", "csv"),
        ("a.TXT", "text"),
        ("t.parquet", "parquet"),
        ("data.ndjson.bz2", "jsonl"),
        ("README", None),
        ("notes.md", None),
    ],
)
def test_format_comes_from_the_extension_ignoring_compression(path, expected):
    assert formats.detect_format(path) == expected


def test_text_lines_drop_line_endings_and_a_leading_bom():
    items = list(formats.parse_text(_lines(b"\xef\xbb\xbfhello\r\nworld\n"), "f.txt", formats.FieldSpec()))
    assert items == [Record("f.txt:0", "f.txt", 0, "hello", {}), Record("f.txt:1", "f.txt", 1, "world", {})]


def test_jsonl_takes_ids_and_passthrough_fields_as_strings():
    data = b'{"id": 7, "text": "hi", "lang": "en", "n": [1, true]}\n\n{"text": "no id"}\n'
    first, second = formats.parse_jsonl(_lines(data), "f.jsonl", SPEC)
    assert first == Record("7", "f.jsonl", 0, "hi", {"lang": "en", "n": "[1, true]"})
    assert isinstance(second, DeadLetter)
    assert (second.position, second.reason) == (2, "missing_id")


def test_dead_letter_payload_is_capped():
    (item,) = formats.parse_jsonl(_lines(b"{this is not json at all}\n"), "f.jsonl", SPEC)
    assert (item.reason, item.payload) == ("invalid_json", b"{this is")


def test_csv_row_position_is_the_line_where_a_multiline_row_starts():
    data = b'id,text,lang,n\n1,"two\nlines",en,3\n2,next,fr,4\n'
    first, second = formats.parse_csv(_lines(data), "f.csv", SPEC)
    assert first == Record("1", "f.csv", 1, "two\nlines", {"lang": "en", "n": "3"})
    assert (second.id, second.position) == ("2", 3)


def test_csv_invalid_bytes_dead_letter_only_their_row():
    data = b"id,text,lang,n\n1,ok,en,1\n2,caf\xe9,en,2\n3,fine,en,3\n"
    items = list(formats.parse_csv(_lines(data), "f.csv", formats.FieldSpec(id_field="id")))
    assert [type(i).__name__ for i in items] == ["Record", "DeadLetter", "Record"]
    assert items[1].reason == "invalid_utf8"
    assert items[1].payload == b"2,caf\xe9,en,2\n"


def test_csv_unterminated_quote_dead_letters_the_rest_of_the_file_as_one_row():
    data = b'id,text\n1,ok\n2,"never closed\n3,lost\n'
    items = list(formats.parse_csv(_lines(data), "f.csv", formats.FieldSpec()))
    assert isinstance(items[0], Record)
    assert (items[1].position, items[1].reason) == (2, "invalid_csv")
    assert len(items) == 2


def test_csv_without_the_text_column_dead_letters_each_row():
    items = list(formats.parse_csv(_lines(b"id,body\n1,a\n2,b\n"), "f.csv", formats.FieldSpec()))
    assert [(i.position, i.reason) for i in items] == [(1, "missing_text"), (2, "missing_text")]


def test_parquet_reads_rows_in_order_with_missing_columns_as_null():
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["one", ""], "lang": ["en", "fr"]}), buffer)
    buffer.seek(0)
    first, second = formats.parse_parquet(buffer, "f.parquet", SPEC)
    assert first == Record("a", "f.parquet", 0, "one", {"lang": "en", "n": None})
    assert (second.position, second.reason) == (1, "empty_text")


def test_parquet_without_the_text_column_dead_letters_each_row():
    buffer = io.BytesIO()
    pq.write_table(pa.table({"body": ["x", "y"]}), buffer)
    buffer.seek(0)
    items = list(formats.parse_parquet(buffer, "f.parquet", formats.FieldSpec()))
    assert [(i.position, i.reason) for i in items] == [(0, "missing_text"), (1, "missing_text")]


def test_a_long_csv_field_is_a_record_and_one_past_the_cap_a_dead_letter(monkeypatch):
    long_text = "word " * 100_000  # 500,000 characters: over Python's default csv field limit
    data = b"text\n" + long_text.encode() + b"\n"
    (item,) = formats.parse_csv(_lines(data), "f.csv", formats.FieldSpec())
    assert isinstance(item, Record) and item.text == long_text
    monkeypatch.setattr(formats, "CSV_FIELD_LIMIT", 1000)
    (item,) = formats.parse_csv(_lines(data), "f.csv", formats.FieldSpec())
    assert isinstance(item, DeadLetter) and item.reason == "invalid_csv" and "field limit" in item.detail


def _flatten(elements) -> tuple[list[Record], list[DeadLetter]]:
    records, dead = [], []
    for element in elements:
        if isinstance(element, DeadLetter):
            dead.append(element)
        else:
            records.extend(element.record(i) for i in range(len(element)))
    return records, dead


# Good lines, then blocks each spoiled by one kind of line only the per-line path reads right.
_GOOD = [b'{"id": "g%d", "text": "post %d", "lang": "en", "other": [1, {"x": null}]}' % (i, i) for i in range(7)]
_SPOILERS = [
    b"",  # blank: skipped
    b'{"id": "s1", "text": "two"} {"id": "s2", "text": "objects"}',
    b'{"id": "s3", "text": " \\u3000\\u001c"}',  # whitespace only, as str.strip() sees it
    b'{"id": "s4", "text": "lone \\ud800 surrogate"}',
    b'{"id": 5, "text": "numeric id"}',
    b'{"id": "s6", "text": "caf\xe9"}',
    b'{"id": "s7", "text": null}',
    b'{"id": "s8", "text": "dup", "text": "key"}',
    b'{"id": "s9", "text": "ok", "lang": 3}',
    b'["not", "an", "object"]',
    b'{"id": "s11", "text": "half',
]


@pytest.mark.parametrize("spoiler", _SPOILERS)
@pytest.mark.parametrize("block_records", [3, 4096])
def test_jsonl_blocks_hold_exactly_what_the_per_line_parser_gives(spoiler, block_records):
    data = b"\n".join(_GOOD[:4] + [spoiler] + _GOOD[4:]) + b"\n"
    expected = list(formats.parse_jsonl(_lines(data), "f.jsonl", SPEC))
    blocks = list(parse_blocks("jsonl", io.BytesIO(data), "f.jsonl", SPEC, block_records))
    assert _flatten(blocks) == (
        [e for e in expected if isinstance(e, Record)],
        [e for e in expected if isinstance(e, DeadLetter)],
    )
    assert all(len(b) <= block_records for b in blocks if not isinstance(b, DeadLetter))


def test_parquet_blocks_hold_exactly_what_the_per_row_parser_gives():
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "text": ["one", "two", None, "four", "   "],
            "lang": ["en", None, "fr", "de", "it"],
            "n": pa.array([None, None, None, None, None], pa.null()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    parsed = list(formats.parse(formats.PARQUET, io.BytesIO(sink.getvalue()), "f.parquet", SPEC))
    for block_records in (2, 4096):
        blocks = parse_blocks(formats.PARQUET, io.BytesIO(sink.getvalue()), "f.parquet", SPEC, block_records)
        assert _flatten(blocks) == (
            [e for e in parsed if isinstance(e, Record)],
            [e for e in parsed if isinstance(e, DeadLetter)],
        )
    clean = pa.table({"id": ["a", "b"], "text": ["one", "two"], "lang": ["en", None]})
    sink = io.BytesIO()
    pq.write_table(clean, sink)
    (block,) = parse_blocks(formats.PARQUET, io.BytesIO(sink.getvalue()), "f.parquet", SPEC)
    assert (block.ids, block.texts, dict(block.fields), block.positions.tolist()) == (
        ["a", "b"], ["one", "two"], {"lang": ["en", None], "n": [None, None]}, [0, 1],
    )  # fmt: skip


def test_a_file_failing_part_way_keeps_the_records_read_before_the_failure():
    class Truncated(io.BytesIO):
        def readline(self, *args):
            line = super().readline(*args)
            if line.startswith(b'{"id": "g3"'):
                raise EOFError("compressed file ended before the end-of-stream marker")
            return line

    data = b"\n".join(_GOOD) + b"\n"
    elements = parse_blocks("jsonl", Truncated(data), "f.jsonl", SPEC, 4096)
    (block,) = [next(elements)]
    assert block.ids == ["g0", "g1", "g2"]
    with pytest.raises(EOFError):
        next(elements)


def test_clean_jsonl_is_decoded_by_pyarrow_without_the_per_line_parser(monkeypatch):
    def per_line(*args, **kwargs):
        raise AssertionError("the per-line parser ran on a clean block")

    monkeypatch.setattr(formats, "parse_jsonl", per_line)
    data = b"\n".join(_GOOD) + b"\n"
    (block,) = parse_blocks("jsonl", io.BytesIO(data), "f.jsonl", SPEC)
    assert block.ids == [f"g{i}" for i in range(7)] and block.texts[3] == "post 3"
    assert dict(block.fields) == {"lang": ["en"] * 7, "n": [None] * 7}
