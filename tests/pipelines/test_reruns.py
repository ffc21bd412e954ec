"""Re-runs into the same ``--output``: a killed run leaves nothing behind, a complete one is kept or overwritten.

Each run writes into its own attempt folder inside ``--output`` and a last
pipeline step moves the finished outputs into ``--output`` (``pipelines.sinks.commit``).
The end-to-end test kills ``python -m pipelines.moderate`` with SIGKILL, as an
OOM killer or a preempted VM would, and re-runs it; the others drive the
refusal, ``--overwrite`` and the commit step itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from pipelines import evaluate, moderate
from pipelines.sinks import OutputAttempt, commit_outputs, remove_stale_attempts, stale_attempts
from pipelines.names import ATTEMPT_PREFIX
from tests.fixtures import SHORT_TEXTS

ROOT = pathlib.Path(__file__).resolve().parents[2]
NUM_RECORDS, NUM_SHARDS = 12_000, 4
# The killed run is stopped this long after its attempt folder appears (Beam makes its temporary
# folders in it before reading), well inside the ~6 s the DirectRunner takes over 12,000 records here.
KILL_AFTER_S = 0.5
OWNED = ("labels-*.parquet", "dead_letter-*.parquet")


def _jsonl(folder: pathlib.Path, texts: list[str], shards: int = 1) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(texts) // shards)
    for shard in range(shards):
        lines = texts[shard * per_shard : (shard + 1) * per_shard]
        (folder / f"part-{shard}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    return str(folder / "*.jsonl")


def _rows(output: pathlib.Path, name: str = "labels") -> pa.Table:
    files = sorted(output.glob(f"{name}-*.parquet"))
    assert files, f"no {name}-*.parquet in {output}"
    return pq.read_table(files).sort_by("id" if name == "labels" else "position")


def _leftovers(output: pathlib.Path) -> list[str]:
    """Everything under ``output`` that is not a final output."""
    return sorted(
        str(p.relative_to(output))
        for p in output.rglob("*")
        if p.parent != output or not p.name.endswith(".parquet") or p.name.startswith(("_", "."))
    )


def _moderate(model: pathlib.Path, inputs: str, output: pathlib.Path, *flags: str) -> list[str]:
    return ["-m", "pipelines.moderate", "--input", inputs, "--output", str(output), "--model", str(model), *flags]


def test_a_run_killed_mid_way_and_rerun_into_the_same_directory_ends_as_an_uninterrupted_run(
    tiny_checkpoint, compilation_cache, tmp_path
):
    texts = [f"{SHORT_TEXTS[i % len(SHORT_TEXTS)]} {i}" for i in range(NUM_RECORDS)]
    inputs = _jsonl(tmp_path / "in", texts, NUM_SHARDS)
    model, reference, output = tiny_checkpoint("bert"), tmp_path / "reference", tmp_path / "out"
    # float32 in every run: `auto` times the paths a CPU has instructions for, so runs could differ.
    flags = ("--compilation_cache_dir", compilation_cache, "--precision", "float32")

    uninterrupted = subprocess.run(
        [sys.executable, *_moderate(model, inputs, reference, *flags)], cwd=ROOT, capture_output=True, text=True
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    with (tmp_path / "killed.log").open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, *_moderate(model, inputs, output, *flags)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 40
        while not list(output.glob(f"{ATTEMPT_PREFIX}*")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(KILL_AFTER_S)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert list(output.glob(f"{ATTEMPT_PREFIX}*/beam-temp-*")), "killed before Beam made its temporary folders"
    assert not list(output.glob("*.parquet")), "a killed run must leave no outputs"

    rerun = subprocess.run(
        [sys.executable, *_moderate(model, inputs, output, *flags)], cwd=ROOT, capture_output=True, text=True
    )

    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "removed 1 unfinished attempt(s) of earlier runs" in rerun.stderr
    rows, expected = _rows(output), _rows(reference)
    assert rows.num_rows == NUM_RECORDS
    assert rows.select(["id", "label", "score", "hate", "offensive", "neither"]).equals(
        expected.select(["id", "label", "score", "hate", "offensive", "neither"])
    )
    assert _leftovers(output) == []
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in reference.iterdir())


def test_a_complete_earlier_run_is_refused_before_reading_unless_overwrite_replaces_it(
    tiny_checkpoint, tmp_path, capsys
):
    model, output = tiny_checkpoint("bert"), tmp_path / "out"
    first = _jsonl(tmp_path / "first", ["ok", "You are great!", "I hate this so much"])
    assert moderate.main(["--input", first, "--output", str(output), "--model", str(model)]) == 0
    # An earlier run with more shards than this one: its extra shard must go too.
    old_extra = output / "dead_letter-00001-of-00002.parquet"
    pq.write_table(pa.table({"position": [7]}), old_extra)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    capsys.readouterr()

    second = _jsonl(tmp_path / "second", ["the weather is nice today", "nobody asked for your opinion"])
    argv = ["--input", second, "--output", str(output), "--model", str(model)]
    # Exit status 2 is a configuration error, raised while the graph is built, before anything runs.
    assert moderate.main(argv) == 2
    err = capsys.readouterr().err
    assert "already holds the outputs of an earlier run" in err and "pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before

    assert moderate.main([*argv, "--overwrite"]) == 0
    assert not old_extra.exists()
    assert _rows(output).column("id").to_pylist() == [f"{tmp_path / 'second' / 'part-0.jsonl'}:{i}" for i in (0, 1)]
    assert _rows(output, "dead_letter").num_rows == 0
    assert _leftovers(output) == []


def test_an_empty_run_with_overwrite_still_replaces_the_outputs_so_readers_see_it(tiny_checkpoint, tmp_path):
    model, output = tiny_checkpoint("bert"), tmp_path / "out"
    base = ["--output", str(output), "--model", str(model), "--max_dead_letter_fraction", "1"]
    assert moderate.main(["--input", _jsonl(tmp_path / "full", ["ok", "You are great!"]), *base]) == 0
    assert moderate.main(["--input", _jsonl(tmp_path / "blank", ["", "   "]), *base, "--overwrite"]) == 0
    assert _rows(output).num_rows == 0
    assert [r["reason"] for r in _rows(output, "dead_letter").to_pylist()] == ["empty_text", "empty_text"]
    assert _leftovers(output) == []


def test_an_attempt_folder_left_by_a_killed_run_never_reaches_the_outputs(tiny_checkpoint, tmp_path, caplog):
    model, output = tiny_checkpoint("bert"), tmp_path / "out"
    stale = output / f"{ATTEMPT_PREFIX}20250131T030000Z-0123456789ab"
    (stale / "beam-temp-labels-1234").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["ghost"]}), stale / "beam-temp-labels-1234" / "part.labels.parquet")
    pq.write_table(pa.table({"id": ["ghost"]}), stale / "labels-00000-of-00001.parquet")
    (output / f"{ATTEMPT_PREFIX}20250130T030000Z-ba9876543210").mkdir()

    inputs = _jsonl(tmp_path / "in", ["ok", "You are great!"])
    # Not a complete run, so no --overwrite is needed.
    assert moderate.main(["--input", inputs, "--output", str(output), "--model", str(model)]) == 0

    assert "removed 2 unfinished attempt(s)" in caplog.text
    assert "ghost" not in _rows(output).column("id").to_pylist()
    assert _rows(output).num_rows == 2
    assert _leftovers(output) == []


def test_evaluation_refuses_a_complete_earlier_report_and_overwrites_it_like_moderation(
    tiny_checkpoint, tmp_path, capsys
):
    model, output = tiny_checkpoint("bert"), tmp_path / "eval"
    folder = tmp_path / "labeled"
    folder.mkdir()
    labeled = [json.dumps({"text": text, "label": i % 3}) + "\n" for i, text in enumerate(SHORT_TEXTS)]
    (folder / "a.jsonl").write_text("".join(labeled))
    argv = ["--input", str(folder / "*.jsonl"), "--output", str(output), "--model", str(model)]
    assert evaluate.main(argv) == 0
    first = json.loads((output / "report.json").read_text())
    assert first["num_examples"] == len(SHORT_TEXTS)
    capsys.readouterr()

    (folder / "a.jsonl").write_text(json.dumps({"text": "ok", "label": 0}) + "\n" + json.dumps({"text": "x"}) + "\n")
    assert evaluate.main(argv) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert json.loads((output / "report.json").read_text()) == first

    assert evaluate.main([*argv, "--overwrite", "--max_dead_letter_fraction", "1"]) == 0
    assert json.loads((output / "report.json").read_text())["num_examples"] == 1
    assert [r["reason"] for r in _rows(output, "dead_letter").to_pylist()] == ["invalid_label"]
    assert sorted(p.name for p in output.iterdir()) == [
        "confusion_matrix.png",
        "dead_letter-00000-of-00001.parquet",
        "report.json",
    ]


def _attempt_with(output: pathlib.Path, names: list[str], *, overwrite: bool) -> tuple[OutputAttempt, list[str]]:
    """An attempt folder holding the finished ``names`` (with a Beam temporary folder), as the writes leave it."""
    attempt = OutputAttempt.new(str(output), OWNED, overwrite=overwrite)
    folder = pathlib.Path(attempt.folder)
    (folder / "beam-temp-labels-1").mkdir(parents=True)
    for name in names:
        (folder / name).write_text(f"new {name}")
    return attempt, [str(folder / name) for name in names]


def test_the_commit_can_be_run_again_after_stopping_part_way(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    old = ["labels-00000-of-00002.parquet", "labels-00001-of-00002.parquet", "dead_letter-00000-of-00001.parquet"]
    for name in old:
        (output / name).write_text(f"old {name}")
    (output / "_SUCCESS.txt").write_text("not ours")
    new = ["labels-00000-of-00001.parquet", "dead_letter-00000-of-00001.parquet"]
    attempt, written = _attempt_with(output, new, overwrite=True)
    # A first try that stopped after deleting the old shards and moving one new shard.
    for name in old:
        (output / name).unlink()
    os.rename(pathlib.Path(attempt.folder) / new[0], output / new[0])

    for _ in range(2):
        assert commit_outputs(written, attempt) == [str(output / name) for name in sorted(new)]
        assert {p.name: p.read_text() for p in output.iterdir()} == {
            **{name: f"new {name}" for name in new},
            "_SUCCESS.txt": "not ours",
        }


def test_the_commit_replaces_a_same_named_old_shard_only_with_overwrite(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "labels-00000-of-00001.parquet").write_text("old")
    attempt, written = _attempt_with(output, ["labels-00000-of-00001.parquet"], overwrite=False)
    with pytest.raises(FileExistsError, match="another run wrote labels-00000-of-00001.parquet"):
        commit_outputs(written, attempt)
    assert (output / "labels-00000-of-00001.parquet").read_text() == "old"

    attempt = OutputAttempt(attempt.output, attempt.folder, attempt.owned, overwrite=True)
    commit_outputs(written, attempt)
    assert (output / "labels-00000-of-00001.parquet").read_text() == "new labels-00000-of-00001.parquet"
    assert not pathlib.Path(attempt.folder).exists()


def test_stale_attempts_are_the_attempt_folders_only(tmp_path):
    output = tmp_path / "out"
    (output / f"{ATTEMPT_PREFIX}a" / "beam-temp-x").mkdir(parents=True)
    (output / f"{ATTEMPT_PREFIX}a" / "beam-temp-x" / "f").write_text("")
    (output / f"{ATTEMPT_PREFIX}b").mkdir()
    (output / "attempt-c").mkdir()
    (output / "labels-00000-of-00001.parquet").write_text("")
    expected = [str(output / f"{ATTEMPT_PREFIX}a"), str(output / f"{ATTEMPT_PREFIX}b")]
    assert stale_attempts(str(output)) == expected
    assert remove_stale_attempts(str(output)) == expected
    assert sorted(p.name for p in output.iterdir()) == ["attempt-c", "labels-00000-of-00001.parquet"]
    assert remove_stale_attempts(str(tmp_path / "missing")) == []


# The objects of the "mem://" store below, shared by every FileSystem instance Beam makes in this process.
_OBJECTS: dict[str, bytes] = {}


class _Object(io.BytesIO):
    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            _OBJECTS[self._path] = self.getvalue()
        super().close()


class MemoryObjectStore(FileSystem):
    """A gs://-like Beam filesystem in memory: flat object names, no folders, as GCSFileSystem behaves."""

    @classmethod
    def scheme(cls) -> str:
        return "mem"

    def join(self, basepath, *paths):
        for part in paths:
            basepath = basepath.rstrip("/") + "/" + part.lstrip("/")
        return basepath

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, data in sorted(_OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return _Object(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return io.BytesIO(_OBJECTS[path])

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            _OBJECTS[destination] = _OBJECTS[source]

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            _OBJECTS[destination] = _OBJECTS.pop(source)

    def exists(self, path):
        return path in _OBJECTS

    def size(self, path):
        return len(_OBJECTS[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return hashlib.md5(_OBJECTS[path]).hexdigest()

    def metadata(self, path):
        return FileMetadata(path, len(_OBJECTS[path]), 0.0)

    def delete(self, paths):
        for path in paths:
            # GCSFileSystem: a trailing "/" deletes every object under that prefix; a missing object is no error.
            for name in [n for n in _OBJECTS if n.startswith(path)] if path.endswith("/") else [path]:
                _OBJECTS.pop(name, None)


@pytest.fixture
def object_store():
    _OBJECTS.clear()
    yield _OBJECTS
    _OBJECTS.clear()


def test_an_object_store_without_folders_gets_the_same_rerun_and_overwrite_behaviour(
    object_store, tiny_checkpoint, tmp_path
):
    output = "mem://bucket/moderation/dt=2025-01-31"
    object_store[f"{output}/labels-00000-of-00002.parquet"] = b"old"
    object_store[f"{output}/labels-00001-of-00002.parquet"] = b"old"
    object_store[f"{output}/{ATTEMPT_PREFIX}20250131T030000Z-0123456789ab/beam-temp-labels-1/part.parquet"] = b"stale"
    object_store["mem://bucket/moderation/dt=2025-01-30/labels-00000-of-00001.parquet"] = b"another day"
    inputs = _jsonl(tmp_path / "in", ["ok", "You are great!"])
    argv = ["--input", inputs, "--output", output, "--model", str(tiny_checkpoint("bert"))]

    assert moderate.main(argv) == 2
    assert moderate.main([*argv, "--overwrite"]) == 0

    assert sorted(n for n in object_store if n.startswith(output)) == [
        f"{output}/dead_letter-00000-of-00001.parquet",
        f"{output}/labels-00000-of-00001.parquet",
    ]
    with FileSystems.open(f"{output}/labels-00000-of-00001.parquet") as f:
        assert pq.read_table(pa.BufferReader(f.read())).num_rows == 2
    assert "mem://bucket/moderation/dt=2025-01-30/labels-00000-of-00001.parquet" in object_store


def test_a_commit_stopped_inside_an_object_store_rename_completes_when_retried(object_store):
    output = "mem://bucket/out"
    attempt = OutputAttempt.new(output, OWNED, overwrite=False)
    written = [f"{attempt.folder}/labels-00000-of-00001.parquet"]
    # The rename's copy happened, its delete did not.
    object_store[written[0]] = object_store[f"{output}/labels-00000-of-00001.parquet"] = b"new"

    assert commit_outputs(written, attempt) == [f"{output}/labels-00000-of-00001.parquet"]
    assert object_store == {f"{output}/labels-00000-of-00001.parquet": b"new"}

    object_store[written[0]] = b"newer"
    with pytest.raises(FileExistsError):
        commit_outputs(written, attempt)
