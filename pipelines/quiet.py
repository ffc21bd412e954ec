"""Beam's known-harmless start-up warnings, kept off the jobs' console; every other warning still shows.

Apache Beam logs a few warnings on every run that a user can do nothing about.
:func:`install` adds one :class:`logging.Filter` to the loggers that emit them,
and the filter drops a record only when both its logger and its exact message
are listed here (:data:`IN_PROCESS`); the same text from another logger, or
another message from the same logger, still shows.  The first of them is logged
while ``import apache_beam`` runs, so ``pipelines/__init__.py`` calls
:func:`install`: every job module (and its console script) is imported through
the package, before it imports Beam.

The DirectRunner in ``multi_processing`` mode forwards its workers' log entries
through one logger of its job service as ``Worker: <the entry as text>``; such a
record is dropped when the entry comes from Beam's own code and its message is
one of :data:`FROM_WORKERS`.
"""

from __future__ import annotations

import logging
import re

APITOOLS = (
    "apitools not found, and bigquery client libraries are not available despite the import not raising an "
    "ImportError."
)
NO_RESOURCE_MODULE = "Resource module is not available for current platform, memory usage cannot be fetched."
NO_SEMI_PERSISTENT_DIRECTORY = (
    "No semi_persistent_directory found:  User registered objects (e.g. schema, logical type) throughregisteries "
    "may not be effective"
)
WORKER_DISCARDS_ARGS = "Discarding unparseable args: ["

# (logger, exact message) of the warnings logged in the job's own process.
IN_PROCESS = frozenset(
    {
        # Beam's BigQuery IO, which no job uses, logs it at import when apache-beam[gcp] is not installed; a gs://
        # path without [gcp] still fails with Beam's own error naming the extra.
        ("root", APITOOLS),
        # RunInference logs it at each model load where Python has no `resource` module; it only loses Beam's
        # memory-usage metric.
        ("root", NO_RESOURCE_MODULE),
    }
)
# Messages of the entries forwarded from multi_processing workers: the two above, a worker's missing staging
# folder (the jobs register no user types), and a worker's parse of the pipeline options, which cannot know the
# jobs' own flags (they reach the workers inside the transforms; the jobs refuse unknown flags before running).
# An entry matches its message exactly, or begins with WORKER_DISCARDS_ARGS (the list of flags follows).
FROM_WORKERS = frozenset({APITOOLS, NO_RESOURCE_MODULE, NO_SEMI_PERSISTENT_DIRECTORY})
FORWARDING_LOGGER = "apache_beam.runners.portability.local_job_service"
_FORWARDED = "Worker: %s"
_ENTRY_MESSAGE = re.compile(r'\bmessage: "((?:[^"\\]|\\.)*)"')
_ENTRY_LOCATION = re.compile(r'\blog_location: "([^"]*)"')


def is_known_harmless(record: logging.LogRecord) -> bool:
    """Whether ``record`` is one of Beam's known-harmless warnings (by its logger and exact message)."""
    if record.name == FORWARDING_LOGGER and record.msg == _FORWARDED and isinstance(record.args, tuple):
        return _is_harmless_worker_entry(str(record.args[0]) if record.args else "")
    return (record.name, record.getMessage()) in IN_PROCESS


def _is_harmless_worker_entry(entry: str) -> bool:
    message, location = _ENTRY_MESSAGE.search(entry), _ENTRY_LOCATION.search(entry)
    if message is None or location is None or "/apache_beam/" not in location.group(1).replace("\\", "/"):
        return False
    text = message.group(1)
    return text in FROM_WORKERS or text.startswith(WORKER_DISCARDS_ARGS)


class _KnownHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_known_harmless(record)


_FILTER = _KnownHarmless()


def install() -> None:
    """Adds the filter to the loggers of :data:`IN_PROCESS` and to the workers' forwarding logger (once)."""
    for name in {logger for logger, _ in IN_PROCESS} | {FORWARDING_LOGGER}:
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
