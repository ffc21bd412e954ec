"""Reading input shards into records (:class:`ReadRecords`) and writing Parquet outputs.

``ReadRecords`` matches the input globs through Beam's ``FileSystems`` (local,
``gs://``, ...), spreads the matched files over workers (and the record blocks
too, except on the DirectRunner), and parses each file with
:mod:`pipelines.formats` from its raw bytes.  It returns two PCollections: the
records, as :class:`~pipelines.records.RecordBlock` s of up to
:data:`~pipelines.formats.BLOCK_RECORDS` records of one file, and the dead
letters found while reading.  Globs are matched once
at construction too, so a glob matching no file, or a file whose format cannot
be told, is an error before the pipeline starts.

Gzip files are decompressed with Python's ``gzip`` over the raw Beam file
rather than Beam's ``CompressedFile``, which silently stops at a truncated
stream; here truncation raises and becomes an ``unreadable_file`` dead letter.
Other compressions (bz2, zstd, ...) go through Beam's AUTO detection.

Outputs are written in two steps, so that a killed run leaves nothing a reader
or a re-run could mistake for outputs: each run writes (:class:`WriteParquet`)
into its own attempt folder inside the output directory (Beam's
``beam-temp-*`` folders then live in it too), and once every output is complete
:class:`CommitOutputs`, a step of the pipeline itself, moves the files into the
output directory and deletes the attempt folder.  Attempt folders of killed runs
are deleted when the next run starts (:func:`remove_stale_attempts`), so one
output directory takes one run at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import io
import logging
import re
import time
import uuid
import zlib
from typing import BinaryIO, Iterable, Iterator, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner

from pipelines import formats
from pipelines import records as R
from pipelines.metrics import NAMESPACE, dead_letter_excess, dead_letter_fraction
from pipelines.options import OptionError
from pipelines.outputs import ATTEMPT_PREFIX, check_output

DEAD_LETTER_TAG = "dead_letter"
_BINARY = "application/octet-stream"
# Everything a broken file can raise while being decompressed or parsed.
_FILE_ERRORS = (OSError, EOFError, ValueError, zlib.error)


def split_patterns(values: Iterable[str]) -> list[str]:
    """``--input`` values, each possibly comma-separated, as a flat list of patterns."""
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def match_inputs(patterns: Sequence[str], fmt: str, id_field: str | None) -> list[str]:
    """All files the patterns match; raises :class:`OptionError` for a pattern matching none
    or, with ``fmt="auto"``, a file whose extension names no known format."""
    if not patterns:
        raise OptionError("--input: no file pattern given")
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        found = [m.path for m in result.metadata_list if not m.path.endswith(("/", "\\"))]
        if not found:
            raise OptionError(f"--input {pattern}: matches no file")
        paths.extend(found)
    for path in paths:
        kind = formats.detect_format(path) if fmt == "auto" else fmt
        if kind is None:
            raise OptionError(
                f"{path}: cannot tell the format from the extension "
                f"(known: {', '.join(sorted(formats.EXTENSIONS))}); pass --format"
            )
        if kind == formats.TEXT and id_field:
            raise OptionError(f"{path}: plain-text files have no fields, so --id_field {id_field} cannot apply")
    return paths


@contextlib.contextmanager
def _open(readable: fileio.ReadableFile, fmt: str) -> Iterator[BinaryIO]:
    """The file's decompressed bytes; the underlying Beam file is closed on exit."""
    compression = CompressionTypes.detect_compression_type(readable.metadata.path)
    if fmt == formats.PARQUET or compression in (CompressionTypes.UNCOMPRESSED, CompressionTypes.GZIP):
        with readable.open(mime_type=_BINARY, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            if fmt != formats.PARQUET and compression == CompressionTypes.GZIP:
                with io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb")) as unzipped:
                    yield unzipped
            else:
                yield raw
    else:
        with readable.open(mime_type=_BINARY, compression_type=compression) as file:
            yield file


class _ParseFile(beam.DoFn):
    """One matched file in, its record blocks out (dead letters on a tagged output)."""

    def __init__(self, fmt: str, spec: formats.FieldSpec):
        self._format = fmt
        self._spec = spec

    def setup(self) -> None:
        self._read = Metrics.counter(NAMESPACE, "records_read")
        self._files = Metrics.counter(NAMESPACE, "files_read")

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        fmt = formats.detect_format(path) if self._format == "auto" else self._format
        self._files.inc()
        if fmt is None:
            self._read.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                R.dead_letter(path, 0, R.UNREADABLE_FILE, b"", "unknown format; pass --format", self._spec.max_payload_bytes),
            )
            return
        next_position = 0
        try:
            with _open(readable, fmt) as file:
                for item in formats.parse_blocks(fmt, file, path, self._spec):
                    if isinstance(item, R.RecordBlock):
                        self._read.inc(len(item))
                        next_position = max(next_position, int(item.positions[-1]) + 1)
                        yield item
                    else:
                        self._read.inc()
                        next_position = max(next_position, item.position + 1)
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
        except _FILE_ERRORS as err:
            self._read.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG,
                R.dead_letter(
                    path,
                    next_position,
                    R.UNREADABLE_FILE,
                    b"",
                    f"reading stopped: {type(err).__name__}: {err}",
                    self._spec.max_payload_bytes,
                ),
            )


def is_direct_runner(runner: PipelineRunner) -> bool:
    """Whether ``runner`` is a DirectRunner (in-process or multi_processing): it shuffles in memory and
    runs inside the launching process, which reads the run's metrics when it ends."""
    return isinstance(runner, (SwitchingDirectRunner, BundleBasedDirectRunner, FnApiRunner))


class ReadRecords(beam.PTransform):
    """Input shards -> ``(record blocks, dead_letters)``.

    ``redistribute`` reshuffles the record blocks so that the costly steps after
    reading spread over all workers even when there are fewer files than
    workers.  By default (None) it does so on every runner except the
    DirectRunner, whose shuffle holds the whole PCollection in one process's
    memory (memory would grow with the input) and whose few local workers the
    files alone already spread over.  ``validate=False`` skips matching at
    construction (for building a graph where the inputs are not reachable,
    e.g. a template).
    """

    def __init__(
        self,
        patterns: Sequence[str],
        *,
        format: str = "auto",
        spec: formats.FieldSpec = formats.FieldSpec(),
        validate: bool = True,
        redistribute: bool | None = None,
    ):
        super().__init__()
        if format not in ("auto", *formats.EXTENSIONS.values()):
            raise OptionError(f"--format {format}: unknown format")
        if spec.max_payload_bytes < 0:
            raise OptionError("--max_payload_bytes must not be negative")
        self.patterns = list(patterns)
        self.format = format
        self.spec = spec
        self.redistribute = redistribute
        self.files = match_inputs(self.patterns, format, spec.id_field) if validate else None

    @classmethod
    def from_options(cls, options, *, validate: bool = True) -> "ReadRecords":
        """From :class:`~pipelines.options.ModerationOptions` (or any options view with the same flags)."""
        spec = formats.FieldSpec(
            text_field=options.text_field,
            id_field=options.id_field or None,
            keep_fields=tuple(f.strip() for f in options.keep_fields.split(",") if f.strip()),
            max_payload_bytes=options.max_payload_bytes,
        )
        return cls(split_patterns(options.input), format=options.format, spec=spec, validate=validate)

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "Patterns" >> beam.Create(self.patterns)
            | "Match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.DISALLOW)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Open" >> fileio.ReadMatches()
            | "Parse" >> beam.ParDo(_ParseFile(self.format, self.spec)).with_outputs(DEAD_LETTER_TAG, main="records")
        )
        records = parsed.records
        redistribute = self.redistribute
        if redistribute is None:
            redistribute = not is_direct_runner(pbegin.pipeline.runner)
        if redistribute:
            records = records | "SpreadRecords" >> beam.Reshuffle()
        return records, parsed[DEAD_LETTER_TAG]


class WriteParquet(beam.PTransform):
    """Dict rows, or with ``tables`` pyarrow tables of rows -> ``DIR/<name>-SSSSS-of-NNNNN.parquet`` with a
    fixed schema; returns the paths written.

    ``DIR`` is a run's attempt folder (:attr:`OutputAttempt.folder`), whose files
    :class:`CommitOutputs` moves into the output directory.
    """

    def __init__(self, directory: str, name: str, schema: pa.Schema, *, tables: bool = False):
        super().__init__()
        self.prefix = FileSystems.join(directory, name)
        self.schema = schema
        self.tables = tables

    def expand(self, rows):
        write = beam.io.WriteToParquetBatched if self.tables else beam.io.WriteToParquet
        return rows | write(self.prefix, self.schema, file_name_suffix=".parquet", codec="snappy")


_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class OutputAttempt:
    """One run's private folder inside the output directory, and what its commit may replace there.

    Attributes:
      output: the output directory (local or any Beam filesystem, e.g. ``gs://``).
      folder: ``output/_attempt-<UTC time>-<random>``, unique to this run.
      owned: file patterns, relative to ``output``, of a run's outputs (``labels-*.parquet``,
        ``report.json``, ...): what a complete earlier run left and an ``overwrite`` replaces.
      overwrite: whether the commit may replace a complete earlier run's outputs.
    """

    output: str
    folder: str
    owned: tuple[str, ...]
    overwrite: bool

    @classmethod
    def new(cls, output: str, owned: Sequence[str], *, overwrite: bool) -> "OutputAttempt":
        """A fresh attempt folder name (nothing is created until the pipeline writes)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{ATTEMPT_PREFIX}{stamp}-{uuid.uuid4().hex[:12]}"
        return cls(output, FileSystems.join(output, name), tuple(owned), overwrite)


def _name(path: str) -> str:
    return FileSystems.split(path)[1]


def _matched(patterns: Sequence[str]) -> list[str]:
    return [m.path for result in FileSystems.match(list(patterns)) for m in result.metadata_list]


def _delete_tree(folder: str) -> None:
    """Deletes ``folder`` and everything under it; nothing happens if it is already gone."""
    files = _matched([FileSystems.join(folder, "**")])
    if files:
        FileSystems.delete(files)
    # Object stores (gs://) have no folders, so deleting the files was all; a local tree keeps its empty folders.
    if FileSystems.exists(folder):
        FileSystems.delete([folder])


def start_attempt(output: str, owned: Sequence[str], *, overwrite: bool, validate: bool) -> OutputAttempt:
    """A new run's :class:`OutputAttempt` in ``output``.

    With ``validate`` (the launcher can reach ``output``), first refuses a
    complete earlier run there unless ``overwrite``, then deletes the attempt
    folders of killed runs.
    """
    attempt = OutputAttempt.new(output, owned, overwrite=overwrite)
    if validate:
        check_output(output, attempt.owned, overwrite=overwrite)
        remove_stale_attempts(output)
    return attempt


def stale_attempts(output: str) -> list[str]:
    """The attempt folders in ``output``: left by killed or failed runs when no run is writing there."""
    base = FileSystems.join(output, ATTEMPT_PREFIX)
    folder_of = re.compile(re.escape(base) + r"[^/\\]*")
    folders = {m.group(0) for path in _matched([base + "*/**"]) if (m := folder_of.match(path))}
    if FileSystems.get_scheme(output) is None:
        # A run killed before writing a row leaves folders without files, which only a directory listing sees.
        folders.update(glob.glob(glob.escape(base) + "*"))
    return sorted(folders)


def remove_stale_attempts(output: str) -> list[str]:
    """Deletes the attempt folders of earlier runs in ``output`` (so runs must not share it); returns them."""
    folders = stale_attempts(output)
    for folder in folders:
        _delete_tree(folder)
    if folders:
        _LOG.warning(
            "%s: removed %d unfinished attempt(s) of earlier runs: %s", output, len(folders), ", ".join(folders)
        )
    return folders


def _same_content(attempt: OutputAttempt, name: str) -> bool:
    source, destination = (FileSystems.join(folder, name) for folder in (attempt.folder, attempt.output))
    return FileSystems.checksum(source) == FileSystems.checksum(destination)


def commit_outputs(files: Iterable[str], attempt: OutputAttempt) -> list[str]:
    """Moves a finished attempt's ``files`` into the output directory and deletes the attempt folder.

    With ``attempt.overwrite`` the earlier run's outputs are deleted first, right
    before the new ones move in.  Safe to run again after it stopped part way (a
    retried bundle): a file already moved is told from an earlier run's file of
    the same name by its source being gone from the attempt folder, or, where a
    rename is a copy then a delete (``gs://``) and stopped in between, by the
    two copies' equal checksums.

    Returns:
      The outputs' final paths.

    Raises:
      FileExistsError: the output directory holds another run's outputs and ``overwrite`` is off.
      FileNotFoundError: a written file is neither in the attempt folder nor in the output directory.
    """
    names = sorted({_name(path) for path in files})
    pending = {name for name in names if FileSystems.exists(FileSystems.join(attempt.folder, name))}
    present = {_name(path) for path in _matched([FileSystems.join(attempt.output, p) for p in attempt.owned])}
    lost = sorted(set(names) - pending - present)
    if lost:
        raise FileNotFoundError(f"{attempt.folder}: {', '.join(lost)} vanished before reaching {attempt.output}")
    copied = {name for name in pending & present if _same_content(attempt, name)}
    replaced = sorted(name for name in present - copied if name not in names or name in pending)
    if replaced and not attempt.overwrite:
        raise FileExistsError(
            f"{attempt.output}: another run wrote {replaced[0]} while this one ran; its outputs stay in "
            f"{attempt.folder} (deleted by the next run here)"
        )
    if replaced:
        FileSystems.delete([FileSystems.join(attempt.output, name) for name in replaced])
    moving = sorted(pending)
    if moving:
        FileSystems.rename(
            [FileSystems.join(attempt.folder, name) for name in moving],
            [FileSystems.join(attempt.output, name) for name in moving],
        )
    _delete_tree(attempt.folder)
    return [FileSystems.join(attempt.output, name) for name in names]


class CommitOutputs(beam.PTransform):
    """PCollections of the paths a run wrote in its attempt folder -> the paths after the commit.

    The commit runs once, after every input PCollection is complete (a global
    combine waits for all of them), inside the pipeline: a job submitted without
    waiting (the Flex Template launcher) commits too.
    """

    def __init__(self, attempt: OutputAttempt):
        super().__init__()
        self.attempt = attempt

    def expand(self, written):
        return (
            tuple(written)
            | "Flatten" >> beam.Flatten()
            | "AllFiles" >> beam.combiners.ToList()
            | "Commit" >> beam.FlatMap(commit_outputs, self.attempt)
        )


class DeadLetterLimitExceeded(RuntimeError):
    """A job dead-lettered more of its records than ``--max_dead_letter_fraction`` allows."""


def records_in(element) -> int:
    """Records an element of a read PCollection stands for: a block's size, else 1 (a record or a dead letter)."""
    return len(element) if isinstance(element, R.RecordBlock) else 1


def _check_dead_letters(_, read_counts: Sequence[int], dead: int, limit: float) -> None:
    read = sum(read_counts)
    if dead_letter_fraction(read, dead) > limit:
        raise DeadLetterLimitExceeded(dead_letter_excess(read, dead, limit))


class GuardDeadLetters(beam.PTransform):
    """Fails the job, once its outputs are committed, when too many records were dead-lettered.

    For runners whose job outlives the launcher (Dataflow through the Flex
    Template, which submits without waiting): the job's own state is then what
    a scheduler sees.  A DirectRunner run is checked by the launching process
    from the run's metrics instead, which exits 1 with the same message.

    Args:
      read: the PCollections whose elements together are the records read (record blocks and
        read-time dead letters).
      dead_letters: every dead letter of the run.
      limit: ``--max_dead_letter_fraction``.
    """

    def __init__(self, read: Sequence[beam.PCollection], dead_letters: beam.PCollection, limit: float):
        super().__init__()
        self._read, self._dead_letters, self._limit = tuple(read), dead_letters, limit

    def expand(self, committed):
        counts = [
            pcoll | f"Sizes{i}" >> beam.Map(records_in) | f"CountRead{i}" >> beam.CombineGlobally(sum)
            for i, pcoll in enumerate(self._read)
        ]
        read = tuple(counts) | "ReadCounts" >> beam.Flatten()
        dead = self._dead_letters | "CountDeadLetters" >> beam.combiners.Count.Globally()
        return (
            committed
            | "AfterCommit" >> beam.combiners.Count.Globally()
            | "Check"
            >> beam.Map(
                _check_dead_letters, beam.pvalue.AsList(read), beam.pvalue.AsSingleton(dead), self._limit
            )
        )


class FinishRun(beam.PTransform):
    """The paths a run wrote in its attempt folder -> committed outputs, then the dead-letter guard.

    The guard is added only where the job outlives the launching process (see
    :class:`GuardDeadLetters`); a DirectRunner run is checked from its metrics.

    Args:
      attempt: the run's attempt.
      read, dead_letters, limit: as for :class:`GuardDeadLetters`.
    """

    def __init__(
        self, attempt: OutputAttempt, read: Sequence[beam.PCollection], dead_letters: beam.PCollection, limit: float
    ):
        super().__init__()
        self._attempt, self._read, self._dead_letters, self._limit = attempt, tuple(read), dead_letters, limit

    def expand(self, written):
        committed = written | "CommitOutputs" >> CommitOutputs(self._attempt)
        if not is_direct_runner(committed.pipeline.runner):
            _ = committed | "GuardDeadLetters" >> GuardDeadLetters(self._read, self._dead_letters, self._limit)
        return committed
