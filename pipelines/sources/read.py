"""Reading input shards into record blocks: :class:`ReadRecords`.

``ReadRecords`` matches the input globs through Beam's ``FileSystems`` (local,
``gs://``, ...), spreads the matched files over workers (and the record blocks
too, except on the DirectRunner), and parses each file with
:mod:`pipelines.sources.formats` from its raw bytes.  It returns two PCollections: the
records, as :class:`~pipelines.sources.records.RecordBlock` s of up to
:data:`~pipelines.sources.R.BLOCK_RECORDS` records of one file, and the dead
letters found while reading.  Globs are matched once
at construction too, so a glob matching no file, or a file whose format cannot
be told, is an error before the pipeline starts.

Gzip files are decompressed with Python's ``gzip`` over the raw Beam file
rather than Beam's ``CompressedFile``, which silently stops at a truncated
stream; here truncation raises and becomes an ``unreadable_file`` dead letter.
Other compressions (bz2, zstd, ...) go through Beam's AUTO detection.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import zlib
from typing import BinaryIO, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineRunner

from flaxmodel import OptionError
from pipelines.names import DEAD_LETTER_TAG, NAMESPACE
import flaxmodel.records as R

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
        kind = R.detect_format(path) if fmt == "auto" else fmt
        if kind is None:
            raise OptionError(
                f"{path}: cannot tell the format from the extension "
                f"(known: {', '.join(sorted(R.EXTENSIONS))}); pass --format"
            )
        if kind == R.TEXT and id_field:
            raise OptionError(f"{path}: plain-text files have no fields, so --id_field {id_field} cannot apply")
    return paths


@contextlib.contextmanager
def _open(readable: fileio.ReadableFile, fmt: str) -> Iterator[BinaryIO]:
    """The file's decompressed bytes; the underlying Beam file is closed on exit."""
    compression = CompressionTypes.detect_compression_type(readable.metadata.path)
    if fmt == R.PARQUET or compression in (CompressionTypes.UNCOMPRESSED, CompressionTypes.GZIP):
        with readable.open(mime_type=_BINARY, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            if fmt != R.PARQUET and compression == CompressionTypes.GZIP:
                with io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb")) as unzipped:
                    yield unzipped
            else:
                yield raw
    else:
        with readable.open(mime_type=_BINARY, compression_type=compression) as file:
            yield file


class _ParseFile(beam.DoFn):
    """One matched file in, its record blocks out (dead letters on a tagged output)."""

    def __init__(self, fmt: str, spec: R.FieldSpec):
        self._format = fmt
        self._spec = spec

    def setup(self) -> None:
        self._read = Metrics.counter(NAMESPACE, "records_read")
        self._files = Metrics.counter(NAMESPACE, "files_read")
        self._blank = Metrics.counter(NAMESPACE, "blank_lines_skipped")

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        fmt = R.detect_format(path) if self._format == "auto" else self._format
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
                for item in R.parse_blocks(fmt, file, path, self._spec, on_blank=self._blank.inc):
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
        spec: R.FieldSpec = R.FieldSpec(),
        validate: bool = True,
        redistribute: bool | None = None,
    ):
        super().__init__()
        if format not in ("auto", *R.EXTENSIONS.values()):
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
        spec = R.FieldSpec(
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
