"""The model step: record blocks tokenized into windows, run through RunInference, scores aggregated per record.

:class:`ClassifyRecords` is the step the jobs use; it is built from one
:class:`flaxmodel.ModelRef`, resolved at launch, which every worker loads once.
"""

from pipelines.model.classify import ClassifyRecords, ScoredBlock, aggregate_windows
from pipelines.model.handler import BlockRunner, FlaxModelHandler, RunSettings, WindowScores
from pipelines.model.tokenizing import TokenizedBlock, TokenizeBlocks

__all__ = [
    "BlockRunner",
    "ClassifyRecords",
    "FlaxModelHandler",
    "RunSettings",
    "ScoredBlock",
    "TokenizeBlocks",
    "TokenizedBlock",
    "WindowScores",
    "aggregate_windows",
]
