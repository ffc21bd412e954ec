"""The review sample as the pipeline draws it, against its design computed here from scratch.

One DirectRunner run (two worker threads; uneven blocks from three separate sources, so blocks land in
different bundles and the per-stratum smallest-hash combine merges partial results) draws the sample
under many seeds, and under a few more from the same records as one block without thresholds (so that
one block holds a stratum's whole draw, about half the sample, and its own cut must keep all of it).  Each draw must be exactly,
per stratum, the k smallest keyed hashes of (seed, id), with the hash and the strata recomputed here,
not taken from :mod:`pipelines.sinks.review`.  The same
draws, reviewed with a synthetic population's known human labels and turned into whole-run estimates by
``moderate-evaluate --reviewed``'s own reader, must have 95% intervals that cover the population's true
figures.  The population is built so that a draw that is not random within strata is biased: reviewers
agree with the model far more often at the start of each block (the records a cut by position or by id
would favour).
"""

from __future__ import annotations

import collections
import hashlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from flaxmodel.records import RecordBlock
from pipelines.model import ScoredBlock
from pipelines.options import ReviewSettings
from pipelines.reviews.reviewed import estimate_file
from pipelines.sinks import WriteReviewSample, allocate
from tests.pipelines.sinks.test_review import LABELS, THRESHOLDS, synthetic_scores

BAND = 0.1
# Uneven blocks; the large ones hold more than SAMPLE records of label:neither, so each block's cut matters.
BLOCK_SIZES = (700, 130, 450, 20, 600, 500)
SOURCES = ((0, 3), (1, 4), (2, 5))  # block indices per beam.Create
RECORDS = sum(BLOCK_SIZES)
SAMPLE = 200
SEEDS = range(30)
# The same records as one block, label strata only (label:neither's draw is then about half the sample).
WHOLE_SEEDS = range(100, 103)
EARLY = 0.3  # the first 30% of each block: reviewers agree with the model 97% of the time there


def keyed_hash(record_id: str, seed: int) -> int:
    """BLAKE2b-64 of the id keyed with the seed, big-endian: the design's hash, written out here."""
    digest = hashlib.blake2b(record_id.encode(), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big")


def stratum_of(row: np.ndarray, thresholds: dict[str, float] = THRESHOLDS) -> str:
    """First match wins: a class score within BAND of its threshold, then any flag, then the top label."""
    scores = dict(zip(LABELS, row.astype(np.float64)))
    if any(abs(scores[c] - t) <= BAND for c, t in thresholds.items()):
        return "near_threshold"
    if any(scores[c] >= t for c, t in thresholds.items()):
        return "flagged"
    return "label:" + LABELS[int(np.argmax(row))]


class Population:
    """Scores, ids, strata, position in block and the human labels a full review would give."""

    def __init__(self):
        self.scores = synthetic_scores(RECORDS, seed=2)
        self.ids = [f"post-{i:05d}" for i in range(RECORDS)]
        self.strata = np.array([stratum_of(row) for row in self.scores], object)
        self.predicted = np.asarray(LABELS, object)[self.scores.argmax(axis=1)]
        self.flagged = (self.scores[:, 0] >= THRESHOLDS["hate"]) | (self.scores[:, 1] >= THRESHOLDS["offensive"])
        starts = np.cumsum((0, *BLOCK_SIZES))
        early = np.concatenate([np.arange(n) < EARLY * n for n in BLOCK_SIZES])
        rng = np.random.default_rng(11)
        agree = np.where(early, 0.97, np.where(self.strata == "near_threshold", 0.4, 0.65))
        other = np.asarray(LABELS, object)[(self.scores.argmax(axis=1) + rng.integers(1, 3, RECORDS)) % 3]
        self.human = np.where(rng.random(RECORDS) < agree, self.predicted, other)
        self.blocks = [self._block(a, b) for a, b in zip(starts[:-1], starts[1:])]

    def whole(self) -> ScoredBlock:
        return self._block(0, RECORDS)

    def _block(self, start: int, stop: int) -> ScoredBlock:
        part, m = self.scores[start:stop], stop - start
        ids = self.ids[start:stop]
        records = RecordBlock(f"shard-{start}.jsonl", np.arange(m), ids, [f"text of {i}" for i in ids], {})
        ones = np.ones(m, np.int32)
        no_targets = np.zeros((m, 0), np.float32)
        return ScoredBlock(records, part, part.argmax(axis=1), no_targets, ones * 5, ones, np.zeros(m, bool), "t@x:float32")

    def truth(self) -> dict[str, float]:
        harmful = self.human != "neither"
        return {
            "flagged precision": (self.flagged & harmful).sum() / self.flagged.sum(),
            "flagged recall": (self.flagged & harmful).sum() / harmful.sum(),
            "hate share": (self.human == "hate").mean(),
            "accuracy": (self.human == self.predicted).mean(),
        }


def _figures(estimates: dict) -> dict[str, dict]:
    return {
        "flagged precision": estimates["flagged"]["precision"],
        "flagged recall": estimates["flagged"]["recall"],
        "hate share": estimates["label_distribution"]["hate"],
        "accuracy": estimates["accuracy"],
    }


@pytest.fixture(scope="module")
def population() -> Population:
    return Population()


@pytest.fixture(scope="module")
def draws(population, tmp_path_factory) -> dict[tuple[str, int], list[dict]]:
    """(layout, seed) -> the review rows the pipeline wrote, every draw in one run."""
    folder = tmp_path_factory.mktemp("draws")
    options = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    with beam.Pipeline(options=options) as pipeline:
        parts = [
            pipeline | f"Source{n}" >> beam.Create([population.blocks[i] for i in indices])
            for n, indices in enumerate(SOURCES)
        ]
        layouts = {
            "spread": (parts | beam.Flatten(), THRESHOLDS, SEEDS),
            "whole": (pipeline | "Whole" >> beam.Create([population.whole()]), {}, WHOLE_SEEDS),
        }
        for layout, (blocks, thresholds, seeds) in layouts.items():
            for seed in seeds:
                settings = ReviewSettings(review_sample=SAMPLE, review_seed=seed, review_band=BAND)
                out = str(folder / f"{layout}-{seed}")
                _ = blocks | f"Review-{layout}-{seed}" >> WriteReviewSample(out, LABELS, thresholds, {}, (), settings)
    keys = [("spread", seed) for seed in SEEDS] + [("whole", seed) for seed in WHOLE_SEEDS]
    return {(k, s): pq.read_table(sorted((folder / f"{k}-{s}").glob("review-*.parquet"))).to_pylist() for k, s in keys}


def test_the_blocks_are_spread_so_that_a_per_block_cut_matters(population):
    assert sorted(i for source in SOURCES for i in source) == list(range(len(BLOCK_SIZES)))
    first = population.strata[: BLOCK_SIZES[0]]
    assert (first == "label:neither").sum() > 2 * SAMPLE
    assert set(population.strata.tolist()) == {"near_threshold", "flagged", "label:neither", "label:offensive", "label:hate"}


def test_each_draw_is_the_k_smallest_keyed_hashes_of_every_stratum(population, draws):
    for layout, thresholds in (("spread", THRESHOLDS), ("whole", {})):
        names = [stratum_of(row, thresholds) for row in population.scores]
        sizes = collections.Counter(names)
        if layout == "whole":  # one block holds each stratum's whole draw: its cut must keep k_h rows
            assert max(allocate(sizes, SAMPLE).values()) > SAMPLE / 3
        rows = {seed: r for (k, seed), r in draws.items() if k == layout}
        _check_draws(population.ids, names, rows)


def _check_draws(ids: list[str], names: list[str], draws: dict[int, list[dict]]) -> None:
    sizes = collections.Counter(names)
    take = allocate(sizes, SAMPLE)
    members = collections.defaultdict(list)
    for record_id, h in zip(ids, names):
        members[h].append(record_id)
    stratum = dict(zip(ids, names))
    for seed, rows in draws.items():
        assert len(rows) == SAMPLE and len({r["id"] for r in rows}) == SAMPLE, seed
        drawn = collections.defaultdict(set)
        for row in rows:
            assert row["review_reason"] == stratum[row["id"]], (seed, row["id"])
            assert row["inclusion_probability"] == pytest.approx(take[row["review_reason"]] / sizes[row["review_reason"]], rel=1e-12)
            drawn[row["review_reason"]].add(row["id"])
        for h, in_stratum in members.items():
            expected = set(sorted(in_stratum, key=lambda i: (keyed_hash(i, seed), i))[: take[h]])
            assert drawn[h] == expected, (seed, h, len(drawn[h] ^ expected))


def test_intervals_from_the_pipelines_draws_cover_the_populations_figures(population, draws, tmp_path):
    truth = population.truth()
    human = dict(zip(population.ids, population.human))
    covered, estimates, errors = collections.Counter(), collections.defaultdict(list), collections.defaultdict(list)
    for (layout, seed), rows in draws.items():
        if layout != "spread":
            continue
        table = pa.Table.from_pylist(rows)
        path = tmp_path / f"reviewed-{seed}.parquet"
        pq.write_table(table.append_column("human_label", pa.array([human[r["id"]] for r in rows], pa.string())), path)
        result = estimate_file(str(path), benign="neither")
        assert result["run_records"] == RECORDS and result["reviewed"] == SAMPLE
        for name, figure in _figures(result).items():
            low, high = figure["ci95"]
            covered[name] += low <= truth[name] <= high
            estimates[name].append(figure["estimate"])
            errors[name].append(figure["standard_error"])
    coverage = {name: covered[name] / len(SEEDS) for name in truth}
    # 30 draws at a true 95% coverage: fewer than 24 covered (0.8) has probability 0.0006, fewer than 26 0.016.
    assert all(c >= 0.8 for c in coverage.values()), coverage
    assert sum(covered.values()) / (len(truth) * len(SEEDS)) >= 0.87, coverage
    # Unbiased: the mean of 30 estimates lies within 3 of its standard errors (se / sqrt(30)) of the truth.
    for name, values in estimates.items():
        bound = 3 * np.mean(errors[name]) / np.sqrt(len(SEEDS))
        assert abs(np.mean(values) - truth[name]) <= bound, (name, np.mean(values), truth[name], bound)
