"""Writing a mixture's validation rows (our functional suite included) as JSONL for the evaluation job.

``python -m flaxmodel.training.export_data --data_root ../shared/data --output val.jsonl
[--mixture FILE] [--sources functional]``

Each row has ``text``, ``label`` (the classes it allows, ``|``-separated),
``source`` and, for the functional suite, ``functionality``, so
``python -m pipelines.evaluate --input val.jsonl --group_by source,functionality``
reports the model per source and per functionality exactly as it labels in
production.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from flaxmodel.errors import ConfigError
from flaxmodel.training.mixture import DEFAULT_MIXTURE, load_mixture, read_mixture, validation_rows


def main(argv: Sequence[str] | None = None) -> None:
    """Parses ``argv``, reads the mixture and writes the chosen sources' validation rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixture", default=DEFAULT_MIXTURE, help="Mixture file (default: the default model's).")
    parser.add_argument("--data_root", required=True, help="Folder the mixture's paths are relative to.")
    parser.add_argument("--output", required=True, help="JSONL file to write.")
    parser.add_argument("--sources", default="", help="Comma-separated sources to export (default: all).")
    args = parser.parse_args(argv)
    mixture = load_mixture(args.mixture)
    wanted = {s.strip() for s in args.sources.split(",") if s.strip()}
    unknown = sorted(wanted - {s.name for s in mixture.sources})
    if unknown:
        raise SystemExit(f"export_data: {ConfigError(f'--sources {unknown} are not in {args.mixture}')}")
    _, val = read_mixture(mixture, args.data_root)
    val = [v for v in val if not wanted or v.name in wanted]
    with open(args.output, "w", encoding="utf-8") as f:
        for row in validation_rows(val, mixture.classes):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{sum(len(v) for v in val)} validation rows of {', '.join(v.name for v in val)} -> {args.output}")


if __name__ == "__main__":
    main()
