"""The moderation graph builds under Dataflow options, as on the Flex Template launcher, without submitting.

The launcher VM runs :func:`pipelines.moderate.build` with the runner set to
Dataflow and the GPU settings of ``deploy/launch.sh``; everything up to the
submission must work there without credentials.  These tests build that graph
with a tiny local model and input, serialise it to the portable proto (what
DataflowRunner sends, every DoFn pickled) and load it back.  The dry run goes
one step further, through DataflowRunner's own translation into a Dataflow
job, and needs ``apache-beam[gcp]`` (the container and the test extra have
it).
"""

from __future__ import annotations

import json
import pathlib

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, PipelineOptions
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

from pipelines.moderate import build

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/demo-project/moderation/moderation:gpu"
ACCELERATOR = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
TOP_LEVEL = (
    "Read",
    "Classify",
    "LabelRows",
    "DeadLetters",
    "WriteLabels",
    "DeadLetterRows",
    "WriteDeadLetters",
    "FinishRun/CommitOutputs",
    # The Flex Template launcher does not wait for the job: the job itself must fail on too many dead letters.
    "FinishRun/GuardDeadLetters",
)


def _dataflow_options(tmp_path: pathlib.Path, model: pathlib.Path, *extra: str) -> PipelineOptions:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(["ok", "You are great!"])))
    return PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=demo-project",
            "--region=us-central1",
            "--temp_location=gs://demo-bucket/tmp",
            f"--sdk_container_image={IMAGE}",
            f"--setup_file={ROOT / 'setup.py'}",
            "--experiments=no_use_multiple_sdk_containers",
            f"--dataflow_service_options={ACCELERATOR}",
            "--number_of_worker_harness_threads=4",
            "--machine_type=n1-standard-4",
            "--disk_size_gb=50",
            f"--input={posts}",
            f"--output={tmp_path / 'out'}",
            f"--model={model}",
            "--threshold=hate=0.5",
            *extra,
        ]
    )


@pytest.fixture
def model(tiny_checkpoint) -> pathlib.Path:
    return tiny_checkpoint("bert")


def test_graph_builds_and_serialises_under_dataflow_options(tmp_path, model):
    # --dry_run: with apache-beam[gcp] installed, Beam's option check otherwise looks the temp bucket up on
    # GCS (its soft-delete policy), which without a network retries for minutes; the graph is the same.
    options = _dataflow_options(tmp_path, model, "--dry_run=True")
    pipeline = beam.Pipeline(options=options)
    assert isinstance(pipeline.runner, DataflowRunner)

    graph = build(pipeline, options)

    assert graph.labels == ("hate", "offensive", "neither")
    proto = pipeline.to_runner_api()
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert set(TOP_LEVEL) <= names
    assert any(name.startswith("Classify/") and "RunInference" in name for name in names)
    assert "Read/SpreadRecords" in names, "records must be spread over Dataflow workers"
    restored = beam.Pipeline.from_runner_api(proto, pipeline.runner, options)
    assert {t.unique_name for t in restored.to_runner_api().components.transforms.values()} == names
    assert not (tmp_path / "out").exists(), "building the graph must not write outputs"


def test_dataflow_dry_run_translates_the_job_without_submitting(tmp_path, model):
    pytest.importorskip("google.auth", reason="DataflowRunner's translation needs apache-beam[gcp]")
    options = _dataflow_options(tmp_path, model, "--dry_run=True")
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)

    job = pipeline.run().job

    (environment,) = job.proto_pipeline.components.environments.values()
    assert environment.urn == "beam:env:docker:v1" and IMAGE.encode() in environment.payload
    staged = [artifact.role_payload for artifact in environment.dependencies]
    assert any(payload.endswith(b"workflow.tar.gz") for payload in staged), "--setup_file package not staged"
    experiments = job.options.view_as(DebugOptions).experiments
    assert {"no_use_multiple_sdk_containers", "use_runner_v2"} <= set(experiments)
    assert job.options.view_as(GoogleCloudOptions).dataflow_service_options == [ACCELERATOR]
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert set(TOP_LEVEL) <= names
