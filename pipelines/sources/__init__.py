"""Sources: input shards matched, opened and parsed into record blocks, with a dead letter for every bad record.

:class:`ReadRecords` is the step the jobs start with.  The records, blocks and
dead letters it yields, and the parsers behind it, are the project's one format
layer, :mod:`flaxmodel.records`, which training reads its data with too.
"""

from pipelines.sources.read import ReadRecords, is_direct_runner, match_inputs, split_patterns

__all__ = ["ReadRecords", "is_direct_runner", "match_inputs", "split_patterns"]
