"""``moderate-report`` on a run of the bundled sample posts: page, figures (record counts, log-scaled tails above
the thresholds), percentages, the review sample, drift against another input's run, one-line errors for bad
inputs, and the page rendered and checked in a real headless browser where one is installed."""

from __future__ import annotations

import html
import json
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import moderate, report
from pipelines.reporting.figures import percent, score_figure
from tests.pipelines.conftest import LABELS, MAX_LENGTH, STRIDE

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "posts.jsonl"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
THRESHOLDS = "hate=0.5,offensive=0.5"
SAMPLE = 20


def _moderate(posts: pathlib.Path, output: pathlib.Path, model_dir: str, cache: str, *flags: str) -> pathlib.Path:
    argv = [
        "--input", str(posts), "--output", str(output), "--model", model_dir, "--max_length", str(MAX_LENGTH),
        "--stride", str(STRIDE), "--precision", "float32", "--compilation_cache_dir", cache,
        "--threshold", THRESHOLDS, "--max_dead_letter_fraction", "1", *flags,
    ]  # fmt: skip
    assert moderate.main(argv) == 0
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_dir, compilation_cache):
    """The demo's run (all sample posts, one broken line added) and an earlier run of other posts."""
    folder = tmp_path_factory.mktemp("report-runs")
    posts = folder / "posts.jsonl"
    posts.write_text(SAMPLES.read_text() + "{not json\n")
    earlier_posts = folder / "earlier.jsonl"
    lines = SAMPLES.read_text().splitlines()
    # Another day's input: the friendly start of the file, many times over.
    texts = [json.loads(line)["text"] + f" #{i}" for i, line in enumerate(lines[:12] * 4)]
    earlier_posts.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    current = _moderate(posts, folder / "run", model_dir, compilation_cache, "--review_sample", str(SAMPLE))
    earlier = _moderate(earlier_posts, folder / "earlier", model_dir, compilation_cache)
    return current, earlier


@pytest.fixture(scope="module")
def report_dir(runs, tmp_path_factory):
    current, earlier = runs
    output = tmp_path_factory.mktemp("report")
    argv = ["--input", str(current), "--output", str(output), "--compare_to", str(earlier), "--threshold", THRESHOLDS]
    assert report.main(argv) == 0
    return output


def _page_text(page: str) -> str:
    """The page's text, tags dropped, one table row per line with its cells joined by " | "."""
    page = re.sub(r"</t[dh]>\s*<t[dh][^>]*>", " | ", page)
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"</tr>|<br>|</p>", "\n", page)))


def test_report_page_and_figures_are_written(report_dir, runs):
    names = sorted(p.name for p in report_dir.iterdir())
    pngs = ["report-labels.png", *(f"report-scores-{c}.png" for c in LABELS)]
    assert names == sorted(["report.html", "run_report.json", *pngs])
    for png in report_dir.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads((report_dir / "run_report.json").read_text())
    labels = pq.read_table(sorted(runs[0].glob("labels-*.parquet"))).to_pylist()
    assert figures["labeled"] == len(labels) == 60 and figures["records"] == 61
    assert figures["label_counts"] == {c: sum(r["label"] == c for r in labels) for c in LABELS}
    assert figures["flagged"] == sum(r["flagged"] for r in labels)
    assert list(figures["models"]) == [labels[0]["model"]]
    assert figures["dead_letters"]["by_reason"] == {"invalid_json": 1}
    assert figures["dead_letters"]["examples"]["invalid_json"][0]["payload"].startswith("{not json")
    assert figures["targets"] is None
    assert figures["thresholds"] == {
        "thresholds": {"hate": 0.5, "offensive": 0.5}, "source": "as given by --threshold", "differing": 0
    }
    assert figures["review_sample"]["drawn"] == SAMPLE
    page = (report_dir / "report.html").read_text()
    assert labels[0]["model"] in page and "invalid_json" in page and "no <code>target_*</code> columns" in page


def test_page_reads_every_share_as_a_percentage(report_dir):
    figures = json.loads((report_dir / "run_report.json").read_text())
    text = _page_text((report_dir / "report.html").read_text())
    rows = text.splitlines()
    for c in LABELS:
        assert f"{c} | {figures['label_counts'][c]} | {percent(figures['label_shares'][c])}" in rows
    assert f"{figures['flagged']} ({percent(figures['flagged_share'])})" in text
    assert f"invalid_json | 1 ({percent(1 / 61)})" in rows
    for c, d in figures["drift"]["shares"].items():
        change = f"{100 * d['change']:+.2f} pp"
        assert f"{c} | {percent(d['previous_share'])} | {percent(d['share'])} | {change} | " in text
    shares = [*figures["label_shares"].values(), figures["flagged_share"]]
    shares += [d[k] for d in figures["drift"]["shares"].values() for k in ("share", "previous_share")]
    cells = {cell.strip() for row in rows for cell in row.split(" | ")}
    assert not [v for v in shares if 0 < v < 1 and (f"{v:.4g}" in cells or f"{v:.4f}" in cells)]


def test_score_figures_count_records_and_show_the_tail_above_the_threshold():
    from matplotlib import pyplot as plt

    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0, 0.5, 900), rng.uniform(0.8, 1, 7)]).astype(np.float32)
    fig = score_figure("hate", scores, scores[:100], 0.8)
    counts, tail = fig.axes
    bars = [p for p in counts.patches if type(p).__name__ == "Rectangle"]
    assert counts.get_yscale() == "linear" and counts.get_ylabel() == "records"
    assert sum(p.get_height() for p in bars) == len(scores)
    assert tail.get_yscale() == "log" and tail.get_ylabel() == "records (log scale)"
    assert sum(p.get_height() for p in tail.patches if type(p).__name__ == "Rectangle") == 7
    assert tail.get_xlim() == pytest.approx((0.8, 1.0))
    assert tail.get_title() == f"at or above 0.8: 7 records ({percent(7 / 907)})"
    plt.close(fig)
    fig = score_figure("neither", scores, None, None)
    assert len(fig.axes) == 1
    plt.close(fig)


def _report_json(run: pathlib.Path, output: pathlib.Path, *flags: str) -> dict:
    assert report.main(["--input", str(run), "--output", str(output), *flags]) == 0
    return json.loads((output / "run_report.json").read_text())


def test_thresholds_are_given_or_the_models_own_that_reproduce_the_runs_flags(runs, model_dir, tmp_path, monkeypatch):
    current, _ = runs
    wrong = _report_json(current, tmp_path / "wrong", "--threshold", "hate=0.9")["thresholds"]
    assert wrong["differing"] > 0
    assert "they are not the run's" in (tmp_path / "wrong" / "report.html").read_text()
    # The run's model folder recommends no thresholds: they are unknown, and the page says how to give them.
    unknown = _report_json(current, tmp_path / "unknown")["thresholds"]
    assert unknown["thresholds"] == {} and unknown["differing"] is None
    assert "Thresholds: <b>unknown</b>" in (tmp_path / "unknown" / "report.html").read_text()
    # A model folder of the run's model's name recommends thresholds: used if they reproduce every flag.
    folder = tmp_path / "here" / pathlib.Path(model_dir).name
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "here")
    (folder / "thresholds.json").write_text(json.dumps({"thresholds": {"hate": 0.5, "offensive": 0.5}}))
    found = _report_json(current, tmp_path / "found")["thresholds"]
    assert found["thresholds"] == {"hate": 0.5, "offensive": 0.5} and found["differing"] == 0
    assert found["source"].startswith(f"recommended by the model {folder.name}")
    (folder / "thresholds.json").write_text(json.dumps({"thresholds": {"hate": 0.7}}))
    assert _report_json(current, tmp_path / "other")["thresholds"]["differing"] is None


def test_review_sample_section_shows_strata_sizes_probabilities_and_the_file(report_dir, runs, tmp_path):
    current, earlier = runs
    files = sorted(current.glob("review-*.parquet"))
    rows = pq.read_table(files).to_pylist()
    review = json.loads((report_dir / "run_report.json").read_text())["review_sample"]
    assert review["files"] == [str(f) for f in files]
    assert review["drawn"] == len(rows) == SAMPLE
    assert review["records"] == review["labeled"] == 60
    for stratum, s in review["strata"].items():
        drawn = [r for r in rows if r["review_reason"] == stratum]
        p = drawn[0]["inclusion_probability"]
        assert s["drawn"] == len(drawn) and s["inclusion_probability"] == [p, p] and s["consistent"]
        assert s["records"] == round(len(drawn) / p) and s["weight"] == pytest.approx(1 / p)
        assert s["labels"] == {c: n for c in LABELS if (n := sum(r["label"] == c for r in drawn))}
    text = _page_text((report_dir / "report.html").read_text())
    assert "Review sample" in text and f"File: {files[0]}" in text
    for stratum, s in review["strata"].items():
        probability = percent(s["inclusion_probability"][0])
        assert f"{stratum} | " in text and f" | {s['records']} | {s['drawn']} | {probability} | " in text
    assert f"all |  | 60 | {SAMPLE} |" in text
    # The earlier run drew none: the section says so.
    assert _report_json(earlier, tmp_path / "earlier")["review_sample"] is None
    assert "The run drew none" in (tmp_path / "earlier" / "report.html").read_text()


def test_page_needs_no_network(report_dir):
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"https?://", page)
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page


def test_drift_table_shows_the_changed_label_shares(report_dir, runs):
    figures = json.loads((report_dir / "run_report.json").read_text())
    shares = figures["drift"]["shares"]
    earlier = pq.read_table(sorted(runs[1].glob("labels-*.parquet"))).to_pylist()
    for c in LABELS:
        assert shares[c]["previous_share"] == pytest.approx(sum(r["label"] == c for r in earlier) / len(earlier))
        assert shares[c]["share"] == pytest.approx(figures["label_shares"][c])
    assert max(abs(s["change"]) for s in shares.values()) > 0.1
    assert figures["drift"]["max_psi"]["value"] > 0.25
    page = (report_dir / "report.html").read_text()
    assert "Drift against" in page and "PSI" in page


def test_max_drift_exits_1_and_still_writes_the_report(runs, tmp_path, capsys):
    current, earlier = runs
    argv = ["--input", str(current), "--output", str(tmp_path), "--compare_to", str(earlier)]
    assert report.main([*argv, "--max_drift", "0.25"]) == 1
    assert "FAILED: drift PSI" in capsys.readouterr().out
    assert (tmp_path / "report.html").exists()
    assert report.main([*argv, "--max_drift", "1000"]) == 0
    itself = ["--input", str(current), "--output", str(tmp_path / "same"), "--compare_to", str(current)]
    assert report.main([*itself, "--max_drift", "0.01"]) == 0


def test_target_columns_get_their_own_section(runs, tmp_path):
    current, _ = runs
    run = tmp_path / "with-targets"
    shutil.copytree(current, run)
    expected = 0
    for path in run.glob("labels-*.parquet"):
        table = pq.read_table(path)
        named = [["religion"] if i % 3 == 0 else [] for i in range(table.num_rows)]
        # The scores sit below 0.5 on purpose: the groups come from `targets` (the model's own thresholds).
        table = table.append_column("target_religion", pa.array([0.3] * table.num_rows, pa.float32()))
        pq.write_table(table.append_column("targets", pa.array(named, pa.list_(pa.string()))), path)
        flagged = table.column("flagged").fill_null(False).to_pylist()
        expected += sum(f and bool(n) for f, n in zip(flagged, named))
    assert report.main(["--input", str(run), "--output", str(tmp_path / "out")]) == 0
    figures = json.loads((tmp_path / "out" / "run_report.json").read_text())
    assert set(figures["targets"]) == {"religion"}
    assert figures["targets"]["religion"]["flagged"] == expected > 0
    assert (tmp_path / "out" / "report-targets.png").exists()


def test_bad_configuration_exits_2(runs, tmp_path, capsys):
    current, _ = runs
    assert report.main(["--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "no labels-*.parquet there" in capsys.readouterr().err
    assert report.main(["--input", str(current), "--output", str(tmp_path / "o"), "--max_drift", "0.2"]) == 2
    assert "--max_drift needs --compare_to" in capsys.readouterr().err
    assert report.main(["--input", str(current), "--output", str(tmp_path / "o"), "--threshold", "hate=high"]) == 2
    assert "'high' for 'hate' is not a number" in capsys.readouterr().err
    assert report.main(["--input", str(current), "--output", str(tmp_path / "o"), "--threshold", "spam=0.5"]) == 2
    assert "'spam' is not a label" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _shard(run: pathlib.Path, name: str) -> pathlib.Path:
    return sorted(run.glob(f"{name}-*.parquet"))[0]


def _truncate(path: pathlib.Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _no_records(run: pathlib.Path) -> None:
    labels = _shard(run, "labels")
    pq.write_table(pq.read_schema(labels).empty_table(), labels)
    for other in [*run.glob("dead_letter-*.parquet"), *run.glob("review-*.parquet")]:
        other.unlink()


def _another_runs_shard(run: pathlib.Path) -> None:
    table = pq.read_table(_shard(run, "labels"))
    score = table.schema.get_field_index("score")
    pq.write_table(table.set_column(score, "score", table.column("score").cast(pa.float64())),
                   run / "labels-00001-of-00002.parquet")  # fmt: skip


# Each damage done to a copy of the run, and what the one-line error says.
BAD_INPUTS = {
    "labels not parquet": (lambda run: _shard(run, "labels").write_bytes(b"not parquet"), "is not a readable Parquet"),
    "labels empty": (lambda run: _shard(run, "labels").write_bytes(b""), "is empty (0 bytes)"),
    "labels cut short": (lambda run: _truncate(_shard(run, "labels")), "is not a readable Parquet file"),
    "labels of something else": (
        lambda run: pq.write_table(pa.table({"id": ["a"], "hate": [0.5]}), _shard(run, "labels")),
        "lacks the column(s) label, score, flagged, model",
    ),
    "shards of two runs": (_another_runs_shard, "differ in their columns' types"),
    "dead letters not parquet": (lambda run: _shard(run, "dead_letter").write_bytes(b"PAR1"), "dead_letter-"),
    "review sample cut short": (lambda run: _truncate(_shard(run, "review")), "review-"),
    "no records": (_no_records, "the run holds no records"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_a_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, case):
    damage, message = BAD_INPUTS[case]
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    damage(run)
    assert report.main(["--input", str(run), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moderate-report: error: --input") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_command_ends_a_corrupt_input_with_one_line(runs, tmp_path):
    current, earlier = runs
    damaged = tmp_path / "earlier"
    shutil.copytree(earlier, damaged)
    _shard(damaged, "labels").write_bytes(b"\x00" * 64)
    argv = ["--input", str(current), "--output", str(tmp_path / "out"), "--compare_to", str(damaged)]
    child = subprocess.run([sys.executable, "-m", "pipelines.report", *argv], cwd=ROOT, capture_output=True, text=True)
    assert child.returncode == 2
    assert child.stderr.splitlines() == [
        f"moderate-report: error: --compare_to: {_shard(damaged, 'labels')} is not a readable Parquet file (Parquet "
        "magic bytes not found in footer. Either the file is corrupted or this is not a parquet file.); re-run the "
        "job into that folder with --overwrite, or give another run's folder"
    ]


def _browser() -> str:
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)}; e.g. apt-get install chromium)")
    return browser


def _headless(page: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    browser = _browser()
    result = subprocess.run(
        [
            browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            # Any name lookup fails: a page that fetched anything would render broken.
            "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1200,3000", *flags, page.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_report_renders_in_a_headless_browser_without_console_errors(report_dir, tmp_path):
    shot = tmp_path / "shot.png"
    result = _headless(report_dir / "report.html", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console


# Added to a copy of the page (the report itself has no scripts): once loaded, what the browser made of it.
INSPECT = """<script>
addEventListener("load", () => {
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "inspected";
  out.textContent = JSON.stringify({
    sections: [...document.querySelectorAll("h2")].map(h => h.textContent),
    images: images.map(i => [i.alt, i.complete && i.naturalWidth > 0, i.getBoundingClientRect().width]),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    text: document.body.innerText,
  });
  document.body.append(out);
});
</script>"""


def test_the_browser_shows_every_section_its_figures_and_percentages(report_dir, runs, tmp_path):
    page = tmp_path / "inspected.html"
    page.write_text((report_dir / "report.html").read_text().replace("</body>", INSPECT + "</body>"))
    dom = _headless(page, "--virtual-time-budget=10000", "--dump-dom").stdout
    found = re.search(r'<pre id="inspected">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["sections"] == [
        "Records", "Labels", "Scores", "Model", "Target groups among flagged records", "Review sample",
        "Dead letters", f"Drift against {runs[1]}",
    ]  # fmt: skip
    pngs = sorted(p.name for p in report_dir.glob("*.png"))
    assert sorted(alt for alt, _, _ in seen["images"]) == pngs
    assert all(decoded and 0 < width <= 1200 for _, decoded, width in seen["images"]), seen["images"]
    assert seen["overflow"] <= 0, "the page is wider than a 1200-pixel window"
    figures = json.loads((report_dir / "run_report.json").read_text())
    text = seen["text"]
    assert "flagged (of labeled)" in text and f"{figures['flagged']} ({percent(figures['flagged_share'])})" in text
    for c in LABELS:
        assert f"{c}\t{figures['label_counts'][c]}\t{percent(figures['label_shares'][c])}" in text
    assert "Thresholds: hate 0.5, offensive 0.5, as given by --threshold." in text
    review = figures["review_sample"]
    assert f"File: {review['files'][0]}" in text
    for stratum, s in review["strata"].items():
        probability = percent(s["inclusion_probability"][0])
        assert f"{stratum}\t" in text and f"\t{s['records']}\t{s['drawn']}\t{probability}\t" in text
    assert f"invalid_json\t1 ({percent(1 / 61)})" in text
