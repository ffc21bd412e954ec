"""How much of each data source a model's tokenizer cannot see: the ``[UNK]`` share, with and without preprocessing.

``python -m benchmarks.unk_share --data_root ../shared/data --json out/bench/unk.json [--model FOLDER]
[--steps emoji_names]``

For every source of the default mixture (its training and validation rows) and
the extra labeled files given with ``--extra NAME=PATH:TEXT_FIELD``, the share
of tokens that are the tokenizer's unknown token, and the share of texts holding
at least one, tokenized as the model sees them: first without preprocessing,
then with ``--steps`` (``flaxmodel.inference.preprocessing``).  Results go to the
JSON and one row of ``benchmarks/README.md``'s results log.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Sequence

import numpy as np

from benchmarks import harness

DEFAULT_EXTRA = (
    "hatemoji_build=hatemoji_build/validation.csv:text",
    "dynahate_dev=dynahate/dev.csv:text",
    "crowdcounter=crowdcounter/crowdcounter.csv:counterspeech",
)


def unk_shares(tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Share of ``[UNK]`` tokens and of texts holding one, over ``texts`` (special tokens left out)."""
    unk = tokenizer.tokenizer.token_to_id("[UNK]")
    if unk is None:
        unk = tokenizer.tokenizer.token_to_id("<unk>")
    block = tokenizer.encode_block(list(texts), 0, 1 << 20)
    is_unk = block.tokens == unk
    starts = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(block.num_tokens - len(tokenizer.prefix) - len(tokenizer.suffix), out=starts[1:])
    with_unk = sum(bool(is_unk[starts[i] : starts[i + 1]].any()) for i in range(len(texts)))
    return {
        "texts": len(texts),
        "tokens": int(len(is_unk)),
        "unk_token_share": round(float(is_unk.mean()) if len(is_unk) else 0.0, 5),
        "texts_with_unk": round(with_unk / max(len(texts), 1), 4),
    }


def _sources(data_root: str, mixture: str, extra: Sequence[str]) -> dict[str, list[str]]:
    from flaxmodel.training.data import detect_format, read_records
    from flaxmodel.training.mixture import load_mixture, read_mixture

    train, val = read_mixture(load_mixture(mixture), data_root)
    texts = {s.name: list(s.texts) for s in train}
    for s in val:
        texts[s.name] = texts.get(s.name, []) + list(s.texts)
    for item in extra:
        name, _, rest = item.partition("=")
        path, _, field = rest.rpartition(":")
        path = os.path.join(data_root, path)
        texts[name] = [r.text for r in read_records(path, detect_format(path), field, ())]
    return texts


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--model", default=None, help="Model folder whose tokenizer counts; default: the default model.")
    parser.add_argument("--steps", default="emoji_names", help="Comma-separated preprocessing steps to compare with.")
    parser.add_argument("--mixture", default=None, help="Mixture file whose sources to count; default: the default model's.")
    parser.add_argument(
        "--extra", action="append", default=None, help="NAME=PATH:TEXT_FIELD under --data_root (default with the default mixture: three held-out sets)."
    )
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)

    from flaxmodel import default_model_path
    from flaxmodel.inference.preprocessing import Preprocessing
    from flaxmodel.inference.tokenizer import Tokenizer, load_tokenizer

    load_before = os.getloadavg()[0]
    folder = args.model or default_model_path()
    steps = Preprocessing(tuple(s for s in args.steps.split(",") if s))
    plain = Tokenizer(load_tokenizer(folder), 512)
    prepared = Tokenizer(load_tokenizer(folder), 512, steps)
    from flaxmodel.training.mixture import DEFAULT_MIXTURE

    extra = args.extra or (() if args.mixture else DEFAULT_EXTRA)
    sources = _sources(args.data_root, args.mixture or DEFAULT_MIXTURE, extra)
    table, seconds = {}, {}
    for name, texts in sources.items():
        start = time.perf_counter()
        table[name] = {"without": unk_shares(plain, texts), "with": unk_shares(prepared, texts)}
        seconds[name] = round(time.perf_counter() - start, 2)
    setup = {"model": folder, "steps": list(steps.steps), "seconds": seconds, **harness.provenance(load_before, args.note)}
    result = {"sources": table, "setup": setup}
    harness.write_result(args.json, result)
    figures = [
        f"{name}: [UNK] tokens {100 * r['without']['unk_token_share']:.2f}% -> {100 * r['with']['unk_token_share']:.2f}%, "
        f"texts with [UNK] {100 * r['without']['texts_with_unk']:.1f}% -> {100 * r['with']['texts_with_unk']:.1f}%"
        for name, r in table.items()
    ]
    harness.record_run("unk_share", figures, setup)
    print("\n".join(figures))
    return result


if __name__ == "__main__":
    main()
