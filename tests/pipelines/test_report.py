"""``moderate-report`` on a run of the bundled sample posts: page, figures, drift against another input's run,
and the page rendered in a real headless browser where one is installed."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import moderate, report
from tests.pipelines.conftest import LABELS, MAX_LENGTH, STRIDE

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "samples" / "posts.jsonl"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _moderate(posts: pathlib.Path, output: pathlib.Path, model_dir: str, cache: str) -> pathlib.Path:
    argv = [
        "--input", str(posts), "--output", str(output), "--model", model_dir, "--max_length", str(MAX_LENGTH),
        "--stride", str(STRIDE), "--precision", "float32", "--compilation_cache_dir", cache,
        "--threshold", "hate=0.5,offensive=0.5", "--max_dead_letter_fraction", "1",
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
    current = _moderate(posts, folder / "run", model_dir, compilation_cache)
    earlier = _moderate(earlier_posts, folder / "earlier", model_dir, compilation_cache)
    return current, earlier


@pytest.fixture(scope="module")
def report_dir(runs, tmp_path_factory):
    current, earlier = runs
    output = tmp_path_factory.mktemp("report")
    assert report.main(["--input", str(current), "--output", str(output), "--compare_to", str(earlier)]) == 0
    return output


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
    page = (report_dir / "report.html").read_text()
    assert labels[0]["model"] in page and "invalid_json" in page and "no <code>target_*</code> columns" in page


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
    assert not (tmp_path / "o").exists()


def test_report_renders_in_a_headless_browser_without_console_errors(report_dir, tmp_path):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)}; e.g. apt-get install chromium)")
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            # Any name lookup fails: a page that fetched anything would render broken.
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--screenshot={shot}", "--window-size=1200,3000",
            (report_dir / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
