"""The weighted estimators on synthetic runs: 95% intervals cover the true whole-run figures about 95% of
the time under the review sample's own design, and the "reviews to halve" figure halves the interval."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.sinks import allocate, strata, unit_hashes
from pipelines.sinks.estimates import Z_95, estimate_quality, stratified_ratio, wilson_interval
from tests.pipelines.sinks.test_review import LABELS, RECORDS, THRESHOLDS, synthetic_scores

SEEDS = 300


@pytest.fixture(scope="module")
def population():
    """A 12,000-record run: scores, strata, flags, and the human labels a full review would give."""
    scores = synthetic_scores(RECORDS, seed=1)
    predicted = np.asarray(LABELS, object)[scores.argmax(axis=1)]
    names = strata(scores, LABELS, THRESHOLDS, 0.1)
    flagged = (scores[:, 0] >= THRESHOLDS["hate"]) | (scores[:, 1] >= THRESHOLDS["offensive"])
    rng = np.random.default_rng(7)
    # Reviewers agree with the model less near a threshold: precision differs between strata.
    agree = np.where(names == "near_threshold", 0.55, np.where(names == "flagged", 0.85, 0.9))
    other = np.asarray(LABELS, object)[(scores.argmax(axis=1) + rng.integers(1, 3, RECORDS)) % 3]
    human = np.where(rng.random(RECORDS) < agree, predicted, other)
    ids = [f"post-{i}" for i in range(RECORDS)]
    return ids, names, predicted, flagged, human


def _draw(ids, names, sizes, seed, take):
    """The review sample's design: per stratum the ``take[h]`` smallest keyed hashes."""
    hashes = unit_hashes(ids, seed)
    chosen = []
    for h, k in take.items():
        members = np.flatnonzero(names == h)
        chosen.extend(members[np.argsort(hashes[members], kind="stable")[:k]])
    return np.asarray(sorted(chosen))


def _estimates(population, seed, take):
    ids, names, predicted, flagged, human = population
    sizes = {h: int((names == h).sum()) for h in set(names.tolist())}
    s = _draw(ids, names, sizes, seed, take)
    return estimate_quality(
        predicted=predicted[s], flagged=flagged[s].tolist(), human=human[s], strata=names[s], sizes=sizes,
        labels=LABELS, benign="neither",
    )  # fmt: skip


def _truth(population):
    _, _, predicted, flagged, human = population
    harmful = human != "neither"
    return {
        "precision": (flagged & harmful).sum() / flagged.sum(),
        "recall": (flagged & harmful).sum() / harmful.sum(),
        "hate share": (human == "hate").mean(),
        "offensive precision": ((predicted == "offensive") & (human == "offensive")).sum()
        / (predicted == "offensive").sum(),
    }


def _figure(estimates, name):
    return {
        "precision": estimates["flagged"]["precision"],
        "recall": estimates["flagged"]["recall"],
        "hate share": estimates["label_distribution"]["hate"],
        "offensive precision": estimates["per_label"]["offensive"]["precision"],
    }[name]


def test_95_percent_intervals_cover_the_whole_runs_figures_about_95_percent_of_the_time(population):
    names = population[1]
    sizes = {h: int((names == h).sum()) for h in set(names.tolist())}
    take = allocate(sizes, 500)
    truth = _truth(population)
    covered = {name: 0 for name in truth}
    for seed in range(SEEDS):
        estimates = _estimates(population, seed, take)
        for name, value in truth.items():
            low, high = _figure(estimates, name)["ci95"]
            covered[name] += low <= value <= high
    coverage = {name: n / SEEDS for name, n in covered.items()}
    # 300 draws: the binomial standard error of a 95% coverage is 1.3 points.
    assert all(0.91 <= c <= 0.985 for c in coverage.values()), coverage


def test_the_weighted_estimate_is_unbiased_where_the_unweighted_share_is_not(population):
    names = population[1]
    sizes = {h: int((names == h).sum()) for h in set(names.tolist())}
    take = allocate(sizes, 500)
    truth = _truth(population)
    runs = [_estimates(population, seed, take) for seed in range(60)]
    for name in ("precision", "hate share"):
        assert np.mean([_figure(e, name)["estimate"] for e in runs]) == pytest.approx(truth[name], abs=0.01), name
    ids, names, _, _, human = population
    s = _draw(ids, names, sizes, 0, take)
    # Small strata (label:hate, near_threshold) are oversampled: unweighted, hate looks far more common than it is.
    assert (human[s] == "hate").mean() > 1.4 * truth["hate share"]


def test_the_reviews_said_to_halve_the_interval_halve_it(population):
    names = population[1]
    sizes = {h: int((names == h).sum()) for h in set(names.tolist())}
    take = allocate(sizes, 300)
    first = [_estimates(population, seed, take)["flagged"]["precision"] for seed in range(40)]
    more = int(np.median([f["more_reviews_to_halve_ci"] for f in first]))
    # Flagged records lie in two strata: about 3x their reviews (a little less with the correction), none elsewhere.
    domain = {h: k for h, k in take.items() if h in ("near_threshold", "flagged")}
    assert 2.5 * sum(domain.values()) <= more <= 3 * sum(domain.values()) + len(domain)
    bigger = {h: k + round(more * domain[h] / sum(domain.values())) if h in domain else k for h, k in take.items()}
    second = [_estimates(population, seed, bigger)["flagged"]["precision"] for seed in range(40)]
    ratio = np.mean([s["standard_error"] for s in second]) / np.mean([f["standard_error"] for f in first])
    assert ratio == pytest.approx(0.5, abs=0.06)


def test_a_census_has_no_sampling_error():
    y = np.array([1, 0, 1, 1], float)
    result = stratified_ratio(y, np.ones(4), np.array(["a", "a", "b", "b"], object), {"a": 2, "b": 2})
    assert result["estimate"] == 0.75 and result["standard_error"] == 0.0
    assert result["ci95"] == [0.75, 0.75] and result["more_reviews_to_halve_ci"] == 0


def test_a_ratio_with_no_record_in_its_denominator_is_reported_as_none():
    result = stratified_ratio(np.zeros(3), np.zeros(3), np.array(["a"] * 3, object), {"a": 10})
    assert result["estimate"] is None and result["reviews"] == 0


def test_target_groups_are_estimated_as_shares_of_harmful_records():
    human = np.array(["hate", "hate", "offensive", "neither"], object)
    result = estimate_quality(
        predicted=human, flagged=[True, True, True, False], human=human, strata=np.array(["a", "a", "b", "b"], object),
        sizes={"a": 10, "b": 30}, labels=LABELS, benign="neither",
        human_targets=[("religion",), ("religion", "race"), (), ()],
    )  # fmt: skip
    # Harmful: 10 records of stratum a (all name religion, half race) and 15 of stratum b (none name a group).
    assert result["targets"]["religion"]["estimate"] == pytest.approx(10 / 25)
    assert result["targets"]["race"]["estimate"] == pytest.approx(5 / 25)
    assert result["flagged"]["precision"]["estimate"] == 1.0


def test_wilson_interval_matches_the_score_interval_and_stays_open_at_0_and_1():
    # Closed forms: at p = 1 the lower end is n / (n + z^2); at p = 1/2, n = 100 the textbook [0.4038, 0.5962].
    assert wilson_interval(1.0, 23)[0] == pytest.approx(23 / (23 + Z_95**2)) and wilson_interval(1.0, 23)[1] == 1.0
    assert wilson_interval(0.0, 23) == pytest.approx([0.0, Z_95**2 / (23 + Z_95**2)])
    assert wilson_interval(0.5, 100) == pytest.approx([0.4038, 0.5962], abs=1e-4)
    assert wilson_interval(0.3, 0) == [0.0, 1.0] and wilson_interval(0.3, float("inf")) == [0.3, 0.3]


@pytest.mark.parametrize("agreement, figure", [(0.995, "precision"), (0.005, "precision")])
def test_intervals_near_0_and_1_still_cover_the_truth(population, agreement, figure):
    """Flagged records nearly all harmful (or nearly none), 60 reviews: a Wald interval collapses to [1, 1]
    (or [0, 0]) on most draws and misses the truth; the interval on the effective size must not."""
    ids, names, predicted, flagged, _ = population
    rng = np.random.default_rng(3)
    human = np.where(flagged, np.where(rng.random(len(ids)) < agreement, "hate", "neither"), "neither")
    truth = (flagged & (human != "neither")).sum() / flagged.sum()
    assert 0 < truth < 0.02 or 0.98 < truth < 1
    sizes = {h: int((names == h).sum()) for h in set(names.tolist())}
    take = allocate(sizes, 60)
    covered, collapsed = 0, 0
    for seed in range(SEEDS):
        s = _draw(ids, names, sizes, seed, take)
        estimates = estimate_quality(
            predicted=predicted[s], flagged=flagged[s].tolist(), human=human[s], strata=names[s], sizes=sizes,
            labels=LABELS, benign="neither",
        )  # fmt: skip
        low, high = estimates["flagged"][figure]["ci95"]
        covered += low <= truth <= high
        collapsed += estimates["flagged"][figure]["estimate"] in (0.0, 1.0)
    assert collapsed > SEEDS / 3  # the regime where Wald's interval has zero width
    assert covered / SEEDS >= 0.9, covered / SEEDS
