"""Writing a mixture's validation rows (our functional suite included) as JSONL for the evaluation job.

``python -m flaxmodel.training.export_data --data_root ../shared/data --output val.jsonl
[--mixture FILE] [--sources functional]``

Each row has ``text``, ``label`` (the classes it allows, ``|``-separated),
``source``, for the functional suite ``functionality``, and, where the source
annotates every target category (:mod:`~flaxmodel.training.target_data`),
``targets`` (the attacked categories joined by ``|``, "" for none), so
``python -m pipelines.evaluate --input val.jsonl --group_by source,functionality``
reports the model per source and per functionality exactly as it labels in
production, and a model's target groups per category.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Sequence

from flaxmodel.commands import run_command
from flaxmodel.errors import ConfigError
from flaxmodel.flags import add_flags, flag, from_namespace
from flaxmodel.training.mixture import DEFAULT_MIXTURE, load_mixture, read_mixture, validation_rows
from flaxmodel.training.target_data import TRAINING_SOURCES, read_target_sets, target_annotations

PROG = "flaxmodel.training.export_data"


@dataclasses.dataclass(frozen=True)
class ExportDataSettings:
    """The export_data command's flags."""

    data_root: str = flag(help="Folder the mixture's paths are relative to.")
    output: str = flag(help="JSONL file to write (its folder is created).")
    mixture: str | None = flag(None, "Mixture file; default: the default model's (training/mixtures/default.toml).")
    sources: tuple[str, ...] = flag((), "Comma-separated sources to export; default: all.")


def _export(settings: ExportDataSettings) -> None:
    path = settings.mixture or DEFAULT_MIXTURE
    mixture = load_mixture(path)
    unknown = sorted(set(settings.sources) - {s.name for s in mixture.sources})
    if unknown:
        raise ConfigError(f"--sources {unknown} are not in {path}; its sources: {[s.name for s in mixture.sources]}")
    _, val = read_mixture(mixture, settings.data_root)
    val = [v for v in val if not settings.sources or v.name in settings.sources]
    names = {s.name for s in mixture.sources}
    annotated = target_annotations(read_target_sets(mixture, settings.data_root)[1]) if names >= set(TRAINING_SOURCES) else {}
    os.makedirs(os.path.dirname(os.path.abspath(settings.output)), exist_ok=True)
    with open(settings.output, "w", encoding="utf-8") as f:
        for row in validation_rows(val, mixture.classes):
            targets = annotated.get((row["source"], row["text"]))
            f.write(json.dumps(row if targets is None else {**row, "targets": targets}, ensure_ascii=False) + "\n")
    print(f"{sum(len(v) for v in val)} validation rows of {', '.join(v.name for v in val)} -> {settings.output}")


def main(argv: Sequence[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``), reads the mixture and writes the chosen sources' validation rows.

    Args:
      argv: the command line's arguments.

    Returns:
      The exit status: 0, or 2 after ``PROG: error: MESSAGE`` on stderr for a mixture, data root or
      source that cannot work (checked before the data is read).
    """
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_flags(parser, ExportDataSettings)
    settings = from_namespace(ExportDataSettings, parser.parse_args(argv))
    return run_command(PROG, lambda: _export(settings))


if __name__ == "__main__":
    sys.exit(main())
