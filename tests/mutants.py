"""Named mutants of the statistical and training-rule modules, each run against the tests meant to kill it.

    .venv/bin/python tests/mutants.py                       # every mutant
    .venv/bin/python tests/mutants.py --list                # names and what each breaks
    .venv/bin/python tests/mutants.py review.position_cut targets.looser_hit   # some (or a prefix: review.)

A mutant is one exact text replacement in one module; its text must occur there exactly once (a mutant
whose text has gone, because the module changed, is reported ``stale`` and not run).  The script first
runs every selected mutant's tests on the code as it is (they must pass, or a "killed" would mean
nothing), then for each mutant: writes the mutated module, runs its tests in a fresh pytest process (no
bytecode written, so no mutated ``.pyc`` outlives it), and restores the module, always: in a ``finally``,
with SIGTERM and SIGHUP turned into exceptions like Ctrl-C, and, should the process be killed outright,
at the next start from the backup it keeps beside a marker in the temporary folder.  A restore writes
the original bytes back when the file holds exactly the mutant; if someone edited the file meanwhile it
reverts only the mutant's text and says so.  It prints a table: mutant, module, killed or survived, and
by which tests.  Not collected by pytest (no ``test_`` prefix) and not run in CI; run it by hand after
changing these modules or their tests, and never while someone else edits them.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATE = pathlib.Path(tempfile.gettempdir()) / f"mutants-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]}"
TIMEOUT_S = 900

REVIEW = "pipelines/sinks/review.py"
ESTIMATES = "pipelines/sinks/estimates.py"
DATA = "pipelines/reporting/data.py"
STATE_PY = "flaxmodel/training/state.py"
TARGETS = "flaxmodel/training/targets.py"
ADAPT_STEP = "flaxmodel/training/adapt_step.py"
ADAPT_RUN = "flaxmodel/training/adapt_run.py"
ADAPT_TARGETS = "flaxmodel/training/adapt_targets.py"

REVIEW_TESTS = ("tests/pipelines/sinks/test_review_draw.py", "tests/pipelines/sinks/test_review.py")
ESTIMATE_TESTS = (
    "tests/pipelines/sinks/test_estimates_formulas.py",
    "tests/pipelines/sinks/test_estimates.py",
    "tests/pipelines/sinks/test_review_draw.py",
)
DATA_TESTS = ("tests/pipelines/reporting/test_data.py",)
STATE_TESTS = ("tests/flaxmodel/training/test_state.py", "tests/flaxmodel/training/test_mixture.py::test_partial_label_loss")
ADAPT = "tests/flaxmodel/training/test_adapt.py::test_"
HELD_TARGET_TESTS = (ADAPT + "the_kept_target_head_scores_as_before_on_the_adapted_encoder",)
REFIT_TESTS = (
    ADAPT + "rows_that_name_target_groups_refit_the_head_and_its_thresholds",
    ADAPT + "a_target_threshold_is_rechosen_with_the_rows_weights_and_needs_five_attacks",
)
TARGET_TESTS = (
    "tests/flaxmodel/training/test_target_figures.py",
    "tests/flaxmodel/training/test_targets.py::test_the_target_head_learns_nothing_from_cells_its_source_does_not_annotate",
)


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...]
    breaks: str


def _m(name, module, old, new, tests, breaks) -> Mutant:
    return Mutant(name, module, old, new, tests, breaks)


MUTANTS = (
    # pipelines/sinks/review.py: the draw (issue 48's two, then others).
    _m("review.position_cut", REVIEW,
       'members = members[np.argsort(hashes[members], kind="stable")[: settings.review_sample]]',
       "members = members[: settings.review_sample]", REVIEW_TESTS,
       "each block keeps its first N rows of a stratum, not its N smallest hashes"),
    _m("review.rank_by_id", REVIEW, "return candidate[0], candidate[1]", "return candidate[1], candidate[0]",
       REVIEW_TESTS, "candidates are ranked by id, not by keyed hash"),
    _m("review.draw_by_id", REVIEW, "for _, _, row in sorted(candidates, key=_rank)[:k]:",
       "for _, _, row in sorted(candidates, key=lambda c: c[1])[:k]:", REVIEW_TESTS,
       "the final draw takes each stratum's candidates with the smallest ids"),
    _m("review.block_cut_quarter", REVIEW, 'kind="stable")[: settings.review_sample]]',
       'kind="stable")[: settings.review_sample // 4]]', REVIEW_TESTS,
       "a block keeps N/4 candidates per stratum (too few when one block holds a stratum's draw)"),
    _m("review.largest_hashes", REVIEW, "beam.combiners.Top.SmallestPerKey(total, key=_rank)",
       "beam.combiners.Top.LargestPerKey(total, key=_rank)", REVIEW_TESTS,
       "the run-wide combine keeps the largest hashes"),
    _m("review.probability_over_total", REVIEW, "probability = k / sizes[stratum]",
       "probability = k / sum(sizes.values())", REVIEW_TESTS, "inclusion probability over the run, not the stratum"),
    _m("review.counts_after_cut", REVIEW, "(stratum, len(members)))",
       "(stratum, min(len(members), settings.review_sample)))", REVIEW_TESTS,
       "stratum sizes count only each block's candidates"),
    _m("review.hash_without_seed", REVIEW, "key = str(seed).encode()", 'key = b"review"', REVIEW_TESTS,
       "the hash ignores --review_seed"),
    _m("review.flagged_before_near", REVIEW,
       "np.where(near, NEAR_THRESHOLD_STRATUM, np.where(flagged, FLAGGED_STRATUM, top))",
       "np.where(flagged, FLAGGED_STRATUM, np.where(near, NEAR_THRESHOLD_STRATUM, top))", REVIEW_TESTS,
       "a flagged row near a threshold goes to flagged"),
    _m("review.proportional_only", REVIEW, "take = {s: min(sizes[s], (total // 2) // len(names)) for s in names}",
       "take = {s: 0 for s in names}", REVIEW_TESTS, "no equal half: small strata drown"),
    # pipelines/sinks/estimates.py: the whole-run estimates.
    _m("estimates.no_fpc", ESTIMATES, "variance = max(big_a - big_b, 0.0)", "variance = max(big_a, 0.0)",
       ESTIMATE_TESTS, "no finite-population correction"),
    _m("estimates.variance_x0.7", ESTIMATES, "a = n * n * s2 / total_x**2", "a = 0.7 * n * n * s2 / total_x**2",
       ESTIMATE_TESTS, "variance 0.7 times the design's"),
    _m("estimates.variance_x1.6", ESTIMATES, "a = n * n * s2 / total_x**2", "a = 1.6 * n * n * s2 / total_x**2",
       ESTIMATE_TESTS, "variance 1.6 times the design's"),
    _m("estimates.unstratified_variance", ESTIMATES, "s2 = d[m].var(ddof=1) if r > 1 else 0.0",
       "s2 = d.var(ddof=1) if r > 1 else 0.0", ESTIMATE_TESTS, "one variance over all strata"),
    _m("estimates.unweighted_ratio", ESTIMATES, "ratio = sum(n * y[m].mean() for n, m in groups) / total_x",
       "ratio = y.sum() / x.sum()", ESTIMATE_TESTS, "the sample's own share, not the weighted one"),
    _m("estimates.wald_interval", ESTIMATES,
       "wilson_interval(ratio, _effective_size(ratio, variance, weights))",
       "[ratio - Z_95 * se, ratio + Z_95 * se]", ESTIMATE_TESTS, "Wald's interval (zero width at 0 and 1)"),
    _m("estimates.kish_as_count", ESTIMATES, "float(weights.sum() ** 2 / (weights**2).sum())",
       "float(len(weights))", ESTIMATE_TESTS, "at 0 and 1 the effective size is the raw count"),
    _m("estimates.halve_factor_4", ESTIMATES, "factor = 4 * big_a / (big_a + 3 * big_b)", "factor = 4.0",
       ESTIMATE_TESTS, "reviews to halve ignore the correction"),
    # pipelines/reporting/data.py: the report's drift statistics.
    _m("data.one_sided_p", DATA, "return 1.0 if se == 0 else math.erfc(",
       "return 1.0 if se == 0 else 0.5 * math.erfc(", DATA_TESTS, "one-sided p-value"),
    _m("data.unpooled_se", DATA, "se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))",
       "se = math.sqrt(k1 / n1 * (1 - k1 / n1) / n1 + k2 / n2 * (1 - k2 / n2) / n2)", DATA_TESTS,
       "unpooled standard error"),
    _m("data.z_without_sqrt2", DATA, "/ se / math.sqrt(2))", "/ se)", DATA_TESTS, "erfc of z, not z / sqrt 2"),
    _m("data.psi_kl", DATA, "np.sum((p - q) * np.log(p / q))", "np.sum(p * np.log(p / q))", DATA_TESTS,
       "PSI becomes one-way KL divergence"),
    _m("data.psi_floor", DATA, "_PSI_FLOOR = 1e-4", "_PSI_FLOOR = 1e-6", DATA_TESTS, "empty bins at 1e-6"),
    _m("data.bins_at_current", DATA, "np.quantile(previous, np.linspace", "np.quantile(current, np.linspace",
       DATA_TESTS, "bins at the current run's deciles"),
    _m("data.edge_left", DATA, 'side="right"', 'side="left"', DATA_TESTS, "a score on an edge falls below it"),
    _m("data.targets_over_all", DATA, 'targets[g] = _share_row(k1, now["flagged"], k2, then["flagged"])',
       "targets[g] = _share_row(k1, n1, k2, n2)", DATA_TESTS, "target shares over all records, not flagged"),
    _m("data.min_psi", DATA, "worst = max(psis, key=psis.get)", "worst = min(psis, key=psis.get)", DATA_TESTS,
       "max_psi names the smallest"),
    _m("data.change_reversed", DATA, '"change": now - then', '"change": then - now', DATA_TESTS,
       "share change has the wrong sign"),
    # flaxmodel/training/state.py: the training losses and schedule.
    _m("state.masked_bce_plain_mean", STATE_PY, "return losses.sum() / jnp.maximum(known.sum(), 1.0)",
       "return optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels).mean()", STATE_TESTS,
       "masked_bce is a plain mean ignoring known"),
    _m("state.masked_bce_over_all_cells", STATE_PY, "jnp.maximum(known.sum(), 1.0)", "known.size", STATE_TESTS,
       "masked_bce divides by every cell"),
    _m("state.masked_bce_unmasked_sum", STATE_PY, "labels) * known\n", "labels)\n", STATE_TESTS,
       "masked cells' losses are summed in"),
    _m("state.partial_label_max", STATE_PY, "jax.nn.logsumexp(allowed, axis=-1)", "jnp.max(allowed, axis=-1)",
       STATE_TESTS, "partial labels keep only the likeliest allowed class"),
    _m("state.warmup_from_peak", STATE_PY, "optax.linear_schedule(0.0, spec.learning_rate,",
       "optax.linear_schedule(spec.learning_rate, spec.learning_rate,", STATE_TESTS, "no warm-up"),
    _m("state.unweighted_batch_loss", STATE_PY,
       "loss = (losses * batch.weights).sum() / jnp.maximum(batch.weights.sum(), jnp.finfo(jnp.float32).tiny)",
       "loss = losses.mean()", STATE_TESTS, "row weights (and padding's 0) ignored"),
    # flaxmodel/training/targets.py: the target head's thresholds, figures and training mask.
    _m("targets.unannotated_as_negatives", TARGETS, "rows = known[:, j]", "rows = np.ones(len(known), bool)",
       TARGET_TESTS, "best_f1_thresholds counts unannotated rows as negatives"),
    _m("targets.looser_hit", TARGETS, "hit = (named & (data.labels > 0.5)).any(axis=1)",
       "hit = named.any(axis=1)", TARGET_TESTS, "any named group is a hit"),
    _m("targets.partially_annotated_judged", TARGETS, "data.hateful & data.known.all(axis=1) & ",
       "data.hateful & ", TARGET_TESTS, "entries annotated in some groups only are judged"),
    _m("targets.untargeted_judged", TARGETS, " & (data.labels.sum(axis=1) > 0)", "", TARGET_TESTS,
       "hateful entries with no group are judged"),
    _m("targets.strict_threshold", TARGETS, "named = scores >= np.asarray(", "named = scores > np.asarray(",
       TARGET_TESTS, "a score at its threshold does not name the group"),
    _m("targets.clean_all_groups", TARGETS, "named[clean].any(axis=1).mean()", "named[clean].all(axis=1).mean()",
       TARGET_TESTS, "non-hateful entries count only when every group is named"),
    _m("targets.head_trains_masked_cells", TARGETS, 'batch["labels"], batch["known"])',
       'batch["labels"], jnp.ones_like(batch["known"]))', TARGET_TESTS,
       "the head's training ignores the mask"),
    # Adapting (flaxmodel/training/adapt_*.py): the target head held or re-fitted, and a diverging run.
    _m("adapt.target_scores_not_held", ADAPT_STEP, "distill_weight * (distilled + kept) + said",
       "distill_weight * distilled + said", HELD_TARGET_TESTS, "the kept head's scores drift with the adapted layers"),
    _m("adapt.named_groups_not_learned", ADAPT_STEP, "said = (cells * batch.said_targets).sum(axis=-1)",
       "said = 0.0 * cells.sum(axis=-1)", REFIT_TESTS, "the rows' own groups do not train the head"),
    _m("adapt.head_frozen_when_refitting", ADAPT_RUN, 'if "target_head" in trainable["params"] and not spec.refit_targets:',
       'if "target_head" in trainable["params"]:', REFIT_TESTS, "a re-fit leaves the head frozen"),
    _m("adapt.empty_cell_unknown", ADAPT_TARGETS, "        if cell is None:\n            continue",
       "        if not cell:\n            continue", REFIT_TESTS, "an empty cell says nothing instead of 'no group'"),
    _m("adapt.thresholds_unweighted", ADAPT_TARGETS, "scores[said, j], weights[said])", "scores[said, j])",
       REFIT_TESTS, "re-chosen target thresholds ignore the rows' weights"),
    _m("adapt.any_attack_enough", ADAPT_TARGETS, "if attacked.sum() >= MIN_ATTACKS and", "if attacked.sum() >= 1 and",
       REFIT_TESTS, "one held-out attack re-chooses a threshold"),
    _m("adapt.no_divergence_guard", ADAPT_RUN, "if not np.isfinite(float(loss)):", "if False:",
       (ADAPT + "a_diverging_run_stops_saying_what_to_lower_and_writes_no_folder",), "a diverged run exports NaNs"),
)  # fmt: skip


class Stop(Exception):
    """SIGTERM or SIGHUP: unwind (and restore) like Ctrl-C."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _restore(path: pathlib.Path, original: bytes, mutant: Mutant) -> str:
    """Puts ``path`` back as it was before ``mutant``; returns what it did."""
    current = path.read_bytes()
    if current == original:
        return "unchanged"
    mutated = original.replace(mutant.old.encode(), mutant.new.encode(), 1)
    if current == mutated:
        path.write_bytes(original)
        assert _sha(path.read_bytes()) == _sha(original), f"{path} not restored"
        return "restored"
    if current.count(mutant.new.encode()) == 1:
        path.write_bytes(current.replace(mutant.new.encode(), mutant.old.encode(), 1))
        return "edited meanwhile: reverted only the mutant's text"
    raise RuntimeError(f"{path}: edited meanwhile and the mutant's text is not found once; its original is in {STATE}")


def _recover() -> None:
    """Restores a module that a killed earlier run left mutated (from the marker and backup it wrote)."""
    marker = STATE / "marker.json"
    if not marker.exists():
        return
    info = json.loads(marker.read_text())
    mutant = next(m for m in MUTANTS if m.name == info["mutant"])
    path = ROOT / mutant.module
    print(f"a killed run left {mutant.module} with mutant {mutant.name}: {_restore(path, (STATE / 'original').read_bytes(), mutant)}")
    marker.unlink()
    (STATE / "original").unlink()


def _pytest(tests: tuple[str, ...], timeout: float) -> tuple[str, list[str], float]:
    """Runs ``tests``; returns (outcome, failing test ids, seconds): outcome passed, failed, error or timeout."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "--tb=no", "-rfE", "-p", "no:cacheprovider", *tests]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", [], time.perf_counter() - started
    seconds = time.perf_counter() - started
    failing = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.M)
    outcome = {0: "passed", 1: "failed"}.get(done.returncode, "error")
    if outcome == "error":
        failing = failing or [f"pytest exit {done.returncode}: {(done.stdout + done.stderr).strip().splitlines()[-1:]}"]
    return outcome, failing, seconds


def _short(test_id: str) -> str:
    """``tests/a/test_b.py::test_c[x]`` -> ``test_b::test_c[x]``."""
    return test_id.rsplit("/", 1)[-1].replace(".py::", "::")


def run(mutants: list[Mutant], baseline: bool, verbose: bool = False) -> int:
    STATE.mkdir(exist_ok=True)
    runnable = [m for m in mutants if (ROOT / m.module).read_text().count(m.old) == 1]
    stale = [m for m in mutants if m not in runnable]
    if baseline:
        tests = tuple(dict.fromkeys(t for m in runnable for t in m.tests))
        outcome, failing, seconds = _pytest(tests, TIMEOUT_S)
        print(f"baseline ({len(tests)} test targets, unmutated): {outcome} in {seconds:.0f} s")
        if outcome != "passed":
            print("the tests fail without a mutant, so no mutant can be judged:", *failing, sep="\n  ")
            return 2
    rows = [(m, "stale", ["its text is not in the module exactly once"], 0.0) for m in stale]
    for m in runnable:
        path = ROOT / m.module
        original = path.read_bytes()
        (STATE / "original").write_bytes(original)
        (STATE / "marker.json").write_text(json.dumps({"mutant": m.name, "module": m.module}))
        try:
            path.write_bytes(original.replace(m.old.encode(), m.new.encode(), 1))
            outcome, failing, seconds = _pytest(m.tests, TIMEOUT_S)
        finally:
            note = _restore(path, original, m)
            (STATE / "marker.json").unlink()
            (STATE / "original").unlink()
        if note not in ("restored", "unchanged"):
            print(f"{m.module}: {note}")
        result = {"failed": "killed", "error": "killed (error)", "timeout": "killed (timeout)"}.get(outcome, "SURVIVED")
        rows.append((m, result, failing, seconds))
        print(f"  {m.name}: {result} ({seconds:.0f} s)", flush=True)
    _table(rows, verbose)
    return 1 if any(r[1] in ("SURVIVED", "stale") for r in rows) else 0


def _table(rows, verbose: bool) -> None:
    width = max(len(m.name) for m, *_ in rows)
    print(f"\n{'mutant':{width}}  {'module':30}  {'result':16}  killed by (first failing test, and how many more)")
    for m, result, failing, _ in rows:
        shown = (_short(failing[0]) if failing else "") + (f" (+{len(failing) - 1} more)" if len(failing) > 1 else "")
        print(f"{m.name:{width}}  {m.module:30}  {result:16}  {shown if result != 'SURVIVED' else '-'}")
        if verbose:
            for test in failing[1:]:
                print(f"{'':{width + 52}}{_short(test)}")
    killed = sum(r[1].startswith("killed") for r in rows)
    print(f"\n{killed} of {len(rows)} mutants killed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run, by name or name prefix (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every failing test of each mutant")
    args = parser.parse_args(argv)
    _recover()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:36} {m.module:30} {m.breaks}")
        return 0
    chosen = [m for m in MUTANTS if not args.names or any(m.name == n or m.name.startswith(n) for n in args.names)]
    if not chosen:
        parser.error(f"no mutant named {args.names}; see --list")
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, _raise_stop)
    return run(chosen, baseline=not args.no_baseline, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
