"""How well a model's hate labels survive obfuscation of the word that carries the hate.

``python -m benchmarks.obfuscation --data_root ../shared/data --json out/bench/obfuscation.json
[--model FOLDER] [--baseline_steps emoji_names]``

Rows: the validation rows labelled ``hate`` of the default mixture's sources of
posts (our functional suite left out: its spelling templates are obfuscated
already) that the model also labels ``hate``.  In each, the key word is the word
of four or more letters whose deletion lowers P(hate) most, which is the word an
evader would disguise.  It is disguised three ways: spaced out ("v e r m i n"),
leetspeak ("v3rm1n") and a repeated last letter ("verminnnn").  Figures: the
share of rows still labelled ``hate``, scored with the preprocessing the model
folder declares and with ``--baseline_steps`` only (the same weights), so the
difference is what the declared steps win back.  Results go to the JSON and one
row of ``benchmarks/README.md``'s results log.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks import harness

_WORD = re.compile(r"[A-Za-z]{4,}")
_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5"})

DISGUISES: dict[str, Callable[[str], str]] = {
    "spaced": " ".join,
    "leetspeak": lambda word: word.translate(_LEET),
    "repeated": lambda word: word + word[-1] * 3,
}


def _hate_rows(data_root: str, mixture_file: str) -> list[str]:
    from flaxmodel.training.mixture import load_mixture, read_mixture

    mixture = load_mixture(mixture_file)
    only_hate = np.eye(len(mixture.classes))[mixture.classes.index("hate")]
    _, val = read_mixture(mixture, data_root)
    texts = []
    for source in val:
        if source.name != "functional":
            texts += [t for t, allowed in zip(source.texts, source.masks) if np.array_equal(allowed, only_hate)]
    return texts


def key_words(p_hate: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> list[tuple[int, int] | None]:
    """Per text, the span ``(start, end)`` of the word whose deletion lowers P(hate) most (None: no such word)."""
    spans = [[(m.start(), m.end()) for m in _WORD.finditer(text)] for text in texts]
    cut = [text[:s] + text[e:] for text, pairs in zip(texts, spans) for s, e in pairs]
    scores = p_hate(cut)
    keys, start = [], 0
    for pairs in spans:
        keys.append(pairs[int(np.argmin(scores[start : start + len(pairs)]))] if pairs else None)
        start += len(pairs)
    return keys


def survival(p_hate: Callable[[list[str]], np.ndarray], texts: Sequence[str], spans, disguise) -> dict[str, Any]:
    """Share of texts still labelled ``hate`` (``p_hate`` margin >= 0) after their key word is disguised."""
    changed = []
    for text, span in zip(texts, spans):
        if span is not None:
            word = text[span[0] : span[1]]
            hidden = disguise(word)
            if hidden != word:
                changed.append(text[: span[0]] + hidden + text[span[1] :])
    return {"rows": len(changed), "still_hate": round(float(np.mean(p_hate(changed) >= 0.0)), 4), "texts": changed}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--mixture", default=None, help="Mixture file whose validation rows to use; default: the default model's.")
    parser.add_argument("--limit", type=int, default=None, help="At most this many of the rows labelled hate.")
    parser.add_argument("--json", required=True)
    parser.add_argument("--model", default=None, help="Model folder; default: the default model.")
    parser.add_argument("--baseline_steps", default="emoji_names", help="Comma-separated steps to compare with.")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--precision", default="float32", help="float32, bfloat16 or int8 (bfloat16 for a large model).")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)

    from flaxmodel import default_model_path, load_classifier
    from flaxmodel.inference import Tokenizer
    from flaxmodel.inference.preprocessing import Preprocessing

    load_before = os.getloadavg()[0]
    folder = args.model or default_model_path()
    classifier = load_classifier(folder, max_length=args.max_length, precision=args.precision)
    declared = classifier.tokenizer
    # The classifier's tokenizer is the process's shared one for the declared steps: the baseline gets its own.
    baseline_steps = Preprocessing(tuple(s for s in args.baseline_steps.split(",") if s))
    baseline = Tokenizer(declared.tokenizer, declared.max_length, baseline_steps)
    hate = classifier.labels.index("hate")

    def probabilities(texts: list[str], tokenizer: Tokenizer) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(classifier.labels)), np.float32)
        return classifier.class_probabilities(classifier.predict_ids(tokenizer.encode(texts)))

    def margin(tokenizer: Tokenizer) -> Callable[[list[str]], np.ndarray]:
        # P(hate) minus the largest other class: >= 0 is labelled hate.
        def score(texts: list[str]) -> np.ndarray:
            p = probabilities(texts, tokenizer)
            return p[:, hate] - np.delete(p, hate, axis=1).max(axis=1)

        return score

    from flaxmodel.training.mixture import DEFAULT_MIXTURE

    texts = _hate_rows(args.data_root, args.mixture or DEFAULT_MIXTURE)
    labelled = [t for t, m in zip(texts, margin(declared)(texts)) if m >= 0][: args.limit]
    spans = key_words(lambda cut: probabilities(cut, declared)[:, hate], labelled)
    table = {}
    for name, disguise in DISGUISES.items():
        with_steps = survival(margin(declared), labelled, spans, disguise)
        without = survival(margin(baseline), labelled, spans, disguise)
        table[name] = {"rows": with_steps["rows"], "declared": with_steps["still_hate"], "baseline": without["still_hate"]}
        table[name]["example"] = with_steps["texts"][0][:120] if with_steps["texts"] else ""
    setup = {
        "model": folder,
        "precision": args.precision,
        "declared_steps": list(declared.preprocessing.steps),
        "baseline_steps": list(baseline_steps.steps),
        "hate_rows": len(texts),
        "labelled_hate": len(labelled),
        **harness.provenance(load_before, args.note),
    }
    result = {"disguises": table, "setup": setup}
    harness.write_result(args.json, result)
    before, after = ("+".join(steps) or "no steps" for steps in (setup["baseline_steps"], setup["declared_steps"]))
    figures = [
        f"{name} (n={r['rows']}): still hate {r['baseline']:.3f} with {before} -> {r['declared']:.3f} with {after}"
        for name, r in table.items()
    ]
    harness.record_run("obfuscation", figures, setup)
    print("\n".join(figures))
    return result


if __name__ == "__main__":
    main()
