"""Writing a run's outputs so that a killed run leaves nothing a reader or a re-run could mistake for them.

Outputs are written in two steps: each run writes (:class:`WriteParquet`)
into its own attempt folder inside the output directory (Beam's
``beam-temp-*`` folders then live in it too), and once every output is complete
:class:`CommitOutputs`, a step of the pipeline itself, moves the files into the
output directory and deletes the attempt folder.  Attempt folders of killed runs
are deleted when the next run starts (:func:`remove_stale_attempts`), so one
output directory takes one run at a time.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
import time
import uuid
from typing import Iterable, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from flaxmodel import OptionError
from pipelines.names import ATTEMPT_PREFIX


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


def check_output(directory: str, owned: Sequence[str], *, overwrite: bool) -> None:
    """Refuses a directory holding a complete earlier run, unless ``overwrite`` lets this run replace it.

    ``owned`` are the file patterns, relative to ``directory``, of a run's outputs
    (e.g. ``labels-*.parquet``).  They only ever appear there through a finished
    run's commit, so any match is a complete earlier run; the unfinished work of
    killed runs lies in attempt folders, which the patterns do not reach.
    """
    if overwrite:
        return
    existing = _matched([FileSystems.join(directory, pattern) for pattern in owned])
    if existing:
        raise OptionError(
            f"--output {directory}: already holds the outputs of an earlier run ({existing[0]}); pass --overwrite "
            "to replace them once this run's outputs are complete, or pick another directory"
        )
