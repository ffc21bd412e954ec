"""Fixtures of the pipeline tests: a small real model folder and input shards of every format.

``model_dir`` is MiniLM with a fresh three-class head (fixed seed) whose weights
are scaled up so that classes are well separated (labels then do not hinge on
float noise between batch shapes).  ``shards`` writes one shard per format,
gzip included, holding good records, records of every bad kind and texts long
enough to need windows, and records what the pipeline must make of each.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import pathlib
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flaxmodel import load_checkpoint, minilm_path, save_checkpoint
from flaxmodel.inference.tokenizer import TOKENIZER_FILE

LABELS = ("hate", "offensive", "neither")
# Flags that keep the end-to-end runs small: short windows, so few shapes to compile.
MAX_LENGTH, STRIDE, MAX_WINDOWS = 32, 8, 4
HEAD_SCALE = 30.0

LONG_TEXT = " ".join(
    f"sentence {i} of a long rant about the neighbours, the noise, the parking and the council."
    for i in range(12)
)
MEDIUM_TEXT = "a medium post that needs two windows: " + " ".join(f"word{i}" for i in range(12))


@dataclasses.dataclass(frozen=True)
class Shards:
    folder: pathlib.Path
    good: dict[str, str]  # id -> text
    dead: list[tuple[str, int, str]]  # (file name, position, reason)
    lang: dict[str, str | None]  # id -> kept "lang" field

    @property
    def pattern(self) -> str:
        return str(self.folder / "*")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("model")
    checkpoint = load_checkpoint(minilm_path(), labels=LABELS)
    params = dict(checkpoint.params)
    head = params["head"]
    params["head"] = {
        **head,
        "classifier": {name: value * HEAD_SCALE for name, value in head["classifier"].items()},
    }
    save_checkpoint(str(folder), params, checkpoint.config)
    shutil.copy(pathlib.Path(minilm_path()) / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    return str(folder)


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("jax-cache"))


def _lines(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _json(value) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Shards:
    folder = tmp_path_factory.mktemp("inputs")
    good: dict[str, str] = {}
    lang: dict[str, str | None] = {}
    dead: list[tuple[str, int, str]] = []

    def expect(name: str, position: int, text: str, language: str | None = None) -> None:
        record_id = f"{folder / name}:{position}"
        good[record_id] = text
        lang[record_id] = language

    (folder / "a.txt").write_bytes(
        _lines(b"Have a lovely day everyone", b"", b"caf\xe9 au lait", b"   ", b"You are an idiot")
    )
    expect("a.txt", 0, "Have a lovely day everyone")
    expect("a.txt", 4, "You are an idiot")
    dead += [("a.txt", 1, "empty_text"), ("a.txt", 2, "invalid_utf8"), ("a.txt", 3, "empty_text")]

    (folder / "b.jsonl").write_bytes(
        _lines(
            _json({"id": "j1", "text": "Thanks for the help!", "lang": "en"}),
            _json({"text": "I hate you and your friends", "lang": "en"}),
            b"{not json",
            b"[1, 2]",
            _json({"lang": "en"}),
            _json({"text": None}),
            _json({"text": 42}),
            _json({"text": "  \t "}),
            b'{"text": "bad \xff byte"}',
            b'{"text": "lone \\ud800 surrogate"}',
            b"",
            _json({"text": LONG_TEXT, "lang": "de"}),
        )
    )
    expect("b.jsonl", 0, "Thanks for the help!", "en")
    expect("b.jsonl", 1, "I hate you and your friends", "en")
    expect("b.jsonl", 11, LONG_TEXT, "de")
    dead += [
        ("b.jsonl", 2, "invalid_json"),
        ("b.jsonl", 3, "invalid_json"),
        ("b.jsonl", 4, "missing_text"),
        ("b.jsonl", 5, "null_text"),
        ("b.jsonl", 6, "non_string_text"),
        ("b.jsonl", 7, "empty_text"),
        ("b.jsonl", 8, "invalid_utf8"),
        ("b.jsonl", 9, "invalid_utf8"),
    ]

    (folder / "c.csv").write_bytes(
        b"id,text,lang\r\n"
        b'c1,"Multi-line\r\npost, quoted",en\r\n'
        b"c2,plain post here,fr\r\n"
        b'c3,"bad"quote,en\r\n'
        b"c4,too,many,fields\r\n"
        b"c5,caf\xe9 bytes,en\r\n"
        b"c6,,en\r\n" + f"c7,{MEDIUM_TEXT},en\r\n".encode()
    )
    expect("c.csv", 1, "Multi-line\r\npost, quoted", "en")
    expect("c.csv", 3, "plain post here", "fr")
    expect("c.csv", 8, MEDIUM_TEXT, "en")
    dead += [("c.csv", 4, "invalid_csv"), ("c.csv", 5, "invalid_csv"), ("c.csv", 6, "invalid_utf8"), ("c.csv", 7, "empty_text")]

    pq.write_table(
        pa.table(
            {
                "id": ["p1", "p2", "p3"],
                "text": ["Parquet row one, what a nice day", None, "Another parquet post, you fool"],
                "lang": ["en", "en", None],
            }
        ),
        folder / "d.parquet",
    )
    expect("d.parquet", 0, "Parquet row one, what a nice day", "en")
    expect("d.parquet", 2, "Another parquet post, you fool", None)
    dead.append(("d.parquet", 1, "null_text"))

    pq.write_table(pa.table({"text": pa.array([7], pa.int64())}), folder / "e.parquet")
    dead.append(("e.parquet", 0, "non_string_text"))

    (folder / "f.jsonl.gz").write_bytes(
        gzip.compress(_lines(_json({"text": "Compressed hello"}), _json({"text": "compressed insult, you moron"})))
    )
    expect("f.jsonl.gz", 0, "Compressed hello")
    expect("f.jsonl.gz", 1, "compressed insult, you moron")

    (folder / "g.txt.gz").write_bytes(gzip.compress(_lines(b"never read", b"to the end"))[:14])
    dead.append(("g.txt.gz", 0, "unreadable_file"))

    (folder / "h.parquet").write_bytes(b"PAR1 this is not a parquet file")
    dead.append(("h.parquet", 0, "unreadable_file"))

    return Shards(folder=folder, good=good, dead=sorted(dead), lang=lang)
