"""The documentation: the site builds without a warning, a broken link fails it, and the commands run as written.

The commands of README.md and of the Quickstart page (``docs/quickstart.md``),
the ``make`` targets aside, are extracted from their ``bash`` and ``python``
blocks and run as written, in a temporary folder that holds the bundled sample
(``samples/``) and this virtual environment (``.venv``); each must exit 0 and
leave the outputs its job promises. The Quickstart's commands read what
``make demo`` writes, so its recipe (from the Makefile) runs first. Commands
that do not depend on one another run side by side, to keep the time modest.
"""

from __future__ import annotations

import ast
import concurrent.futures
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
QUICKSTART = DOCS / "quickstart.md"
README_MAX_LINES = 80
# Every job has an example in README.md, and so does the Python API.
README_JOBS = {"moderate", "moderate-evaluate", "moderate-report", "moderate-adapt"}
COMMAND_TIMEOUT_S = 600
# Most of a job's time is start-up on one core (imports, compiling), so the independent ones run all at once.
PARALLEL = 6

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}


@dataclass
class Command:
    """One command as written in a page: a shell line, or a whole Python block."""

    source: str
    kind: str  # "shell" or "python"
    text: str
    after: list["Command"] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.source}: {self.text if self.kind == 'shell' else 'python block'}"


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced code block."""
    return [(m.group(1).lower(), m.group(2)) for m in FENCE.finditer(markdown)]


def shell_lines(body: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comment and ``make`` lines left out."""
    joined = body.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.split()[0] == "make":
            continue
        commands.append(" ".join(line.split()))
    return commands


def page_commands(path: Path, source: str) -> list[Command]:
    commands = []
    for language, body in fenced_blocks(path.read_text(encoding="utf-8")):
        if language in SHELL_LANGUAGES:
            commands += [Command(source, "shell", line) for line in shell_lines(body)]
        elif language == "python":
            commands.append(Command(source, "python", body))
    return commands


def demo_recipe() -> list[str]:
    """The shell lines ``make demo`` runs (the Makefile's ``demo:`` recipe), with ``$(PY)`` written out."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = line.strip().replace("$(PY)", ".venv/bin/python")
        assert "$(" not in command, f"make demo's recipe uses a variable this test does not know: {command}"
        recipe.append(command)
    return recipe


def _argv(command: Command) -> list[str]:
    return shlex.split(command.text, comments=True) if command.kind == "shell" else []


def _option(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def program(argv: list[str]) -> str:
    """The job a command runs: a console script's name, or ``python -m pipelines.NAME``'s job."""
    if not argv:
        return ""
    name = os.path.basename(argv[0])
    if name.startswith("python") and argv[1:2] == ["-m"]:
        module = argv[2]
        return {
            "pipelines.moderate": "moderate",
            "pipelines.evaluate": "moderate-evaluate",
            "pipelines.report": "moderate-report",
            "pipelines.adapt": "moderate-adapt",
        }.get(module, module)
    return name


def promised_outputs(command: Command) -> list[str]:
    """Globs, relative to the run's folder, of the files a job promises in its ``--output``."""
    argv = _argv(command)
    job, output = program(argv), _option(argv, "--output")
    if command.kind == "python" or job == "rm":
        return []
    assert output, f"{command.label}: no --output"
    review = int(_option(argv, "--review_sample") or 0)
    promised = {
        "moderate": ["labels-*.parquet", "dead_letter-*.parquet"] + (["review-*.parquet"] if review else []),
        "moderate-evaluate": ["review_estimates.json"] if _option(argv, "--reviewed") else ["report.json"],
        "moderate-report": ["report.html", "run_report.json"],
        "moderate-adapt": ["adapt_report.json", "README.md", "thresholds.json", "training_data.json"],
    }
    assert job in promised, f"{command.label}: this test knows no outputs of {job!r}; add them to promised_outputs"
    return [os.path.join(output, name) for name in promised[job]]


def produced_folder(command: Command) -> str | None:
    argv = _argv(command)
    return _option(argv, "--output") if argv and program(argv) != "rm" else None


def link_dependencies(commands: list[Command]) -> None:
    """A command runs after every earlier one whose ``--output`` folder it names."""
    for i, command in enumerate(commands):
        for earlier in commands[:i]:
            folder = produced_folder(earlier)
            if folder and re.search(rf"(?<![\w/.-]){re.escape(folder)}(?![\w.-])", command.text):
                command.after.append(earlier)


def literal_comments(block: str) -> list[str]:
    """The comments of a Python block that are Python literals: what its prints promise to show."""
    found = []
    for line in block.splitlines():
        if "#" in line and "print(" in line:
            comment = line.split("#", 1)[1].strip()
            try:
                ast.literal_eval(comment)
            except (ValueError, SyntaxError):
                continue
            found.append(comment)
    return found


def _readme_and_quickstart() -> tuple[list[Command], list[Command]]:
    readme = page_commands(README, "README.md")
    quickstart = [Command("make demo", "shell", line) for line in demo_recipe()]
    quickstart += page_commands(QUICKSTART, "docs/quickstart.md")
    return readme, quickstart


def _workspace(tmp: Path) -> Path:
    (tmp / "samples").symlink_to(ROOT / "samples", target_is_directory=True)
    (tmp / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return tmp


def _run(command: Command, folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if command.kind == "shell":
        argv = ["bash", "-c", command.text]
    else:
        argv = [str(folder / ".venv" / "bin" / "python"), "-c", command.text]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def run_all(commands: list[Command], folder: Path) -> dict[int, subprocess.CompletedProcess | None]:
    """Runs each command once its dependencies have succeeded, up to PARALLEL at a time.

    Returns each command's result by ``id``; None for one left unrun because a dependency failed.
    """
    results: dict[int, subprocess.CompletedProcess | None] = {}
    pending = list(commands)
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        running: dict[concurrent.futures.Future, Command] = {}
        while pending or running:
            for command in list(pending):
                if all(id(dep) in results for dep in command.after):
                    pending.remove(command)
                    if any(results[id(dep)] is None or results[id(dep)].returncode for dep in command.after):
                        results[id(command)] = None
                    else:
                        running[pool.submit(_run, command, folder)] = command
            if not running:
                continue
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                results[id(running.pop(future))] = future.result()
    return results


@pytest.fixture(scope="module")
def command_runs(tmp_path_factory):
    """Every README and Quickstart command run once in a fresh folder: (folder, [(command, result)])."""
    readme, quickstart = _readme_and_quickstart()
    folder = _workspace(tmp_path_factory.mktemp("commands"))
    commands, seen = [], set()
    for command in readme + quickstart:
        if (command.kind, command.text) not in seen:  # the same line in both pages runs once
            seen.add((command.kind, command.text))
            commands.append(command)
    link_dependencies(commands)
    results = run_all(commands, folder)
    return folder, [(command, results[id(command)]) for command in commands]


def test_readme_is_short_and_has_an_example_of_each_job_and_of_the_python_api():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines, at most {README_MAX_LINES}"
    readme, _ = _readme_and_quickstart()
    jobs = {program(_argv(c)) for c in readme if c.kind == "shell"}
    assert README_JOBS <= jobs, f"README.md has no example of {sorted(README_JOBS - jobs)}"
    assert any(c.kind == "python" and "from flaxmodel import" in c.text for c in readme)


def test_the_extraction_reads_the_pages_as_a_reader_would():
    page = (
        "```bash\nmake demo   # set up\n.venv/bin/moderate --input a \\\n    --output out/x  # note\n```\n"
        "```text\nnot run\n```\n```python\nprint(1)  # 1\n```\n"
    )
    blocks = fenced_blocks(page)
    assert [language for language, _ in blocks] == ["bash", "text", "python"]
    assert shell_lines(blocks[0][1]) == [".venv/bin/moderate --input a --output out/x # note"]
    assert literal_comments(blocks[2][1]) == ["1"]
    first = Command("p", "shell", ".venv/bin/moderate --input a --output out/x")
    second = Command("p", "shell", ".venv/bin/moderate-report --input out/x --output out/x-report")
    third = Command("p", "shell", ".venv/bin/moderate-report --input out/xy --output out/r")
    link_dependencies([first, second, third])
    assert second.after == [first] and third.after == []
    assert demo_recipe()[-1].startswith(".venv/bin/python -m pipelines.moderate ")


def test_readme_and_quickstart_commands_run_as_written_on_the_bundled_sample(command_runs):
    folder, runs = command_runs
    failures = []
    for command, result in runs:
        if result is None:
            failures.append(f"{command.label}\n  not run: a command it depends on failed")
            continue
        if result.returncode != 0:
            failures.append(
                f"{command.label}\n  exit {result.returncode}\n  stderr: {result.stderr.strip()[-1500:]}"
            )
            continue
        missing = [p for p in promised_outputs(command) if not glob.glob(str(folder / p))]
        if missing:
            failures.append(f"{command.label}\n  missing outputs: {missing}")
        if command.kind == "python":
            if not result.stdout.strip():
                failures.append(f"{command.label}\n  printed nothing")
            for promised in literal_comments(command.text):
                if promised not in result.stdout:
                    failures.append(f"{command.label}\n  did not print {promised}: {result.stdout.strip()}")
    assert not failures, "\n".join(failures)


def test_the_jobs_outputs_are_what_the_pages_say(command_runs):
    folder, runs = command_runs
    ran = {program(_argv(c)): (c, r) for c, r in runs if c.source == "README.md" and r is not None and not r.returncode}
    if "moderate" in ran:
        _, result = ran["moderate"]
        assert "read = labeled + dead-lettered OK" in result.stdout
    if "moderate-report" in ran:
        command, _ = ran["moderate-report"]
        report = json.loads((folder / _option(_argv(command), "--output") / "run_report.json").read_text())
        assert report
    if "moderate-adapt" in ran:
        from flaxmodel import resolve_model

        command, _ = ran["moderate-adapt"]
        assert resolve_model(str(folder / _option(_argv(command), "--output"))).labels
    assert ran, "no README command ran"


def _build(source: Path, output: Path) -> subprocess.CompletedProcess:
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import build; "
        "sys.exit(build.build(sys.argv[3], source=sys.argv[2]))"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(DOCS), str(source), str(output)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def test_the_site_builds_without_a_warning(tmp_path):
    result = _build(DOCS, tmp_path / "html")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    for page in ("index", "quickstart", "moderating", "reviewing", "adapting", "training", "models/index",
                 "models/default", "models/default-history", "deploying", "benchmarks", "architecture", "api"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    assert "flaxmodel.load_classifier" in api and "pipelines.moderate.main" in api


def _small_site(folder: Path, page: str) -> Path:
    """A two-page site with the real configuration (conf.py and its extension) and ``page`` as its second page."""
    folder.mkdir()
    for name in ("conf.py", "console_scripts.py"):
        shutil.copy(DOCS / name, folder / name)
    (folder / "index.md").write_text("# Index\n\n```{toctree}\npage\n```\n\n## A heading\n\nText.\n")
    (folder / "page.md").write_text(page)
    return folder


GOOD_PAGE = "# Page\n\n[Back](index.md), [a heading](index.md#a-heading), [here](#below).\n\n## Below\n\nText.\n"
BROKEN_PAGES = {
    "a page that does not exist": "# Page\n\n[Gone](no-such-page.md)\n",
    "a heading that does not exist": "# Page\n\n[Gone](index.md#no-such-heading)\n",
    "an anchor on the same page that does not exist": "# Page\n\n[Gone](#no-such-heading)\n",
    "an include of a missing file": "# Page\n\n```{include} no-such-file.md\n```\n",
}


def test_a_site_with_good_links_builds(tmp_path):
    result = _build(_small_site(tmp_path / "site", GOOD_PAGE), tmp_path / "html")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("what", sorted(BROKEN_PAGES))
def test_a_broken_link_fails_the_build(tmp_path, what):
    result = _build(_small_site(tmp_path / "site", BROKEN_PAGES[what]), tmp_path / "html")
    assert result.returncode != 0, f"{what}: built anyway"
    assert "page.md" in result.stderr and ("WARNING" in result.stderr or "CRITICAL" in result.stderr), result.stderr
