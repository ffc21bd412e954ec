"""The launch paths (script, nightly workflow, Airflow DAG) pass only options the pipeline knows, with GPU settings.

No cloud and no Airflow here: the shell scripts run with ``DRY_RUN=1`` (they
print their gcloud commands), the Cloud Workflows definition is read as YAML,
and the DAG file is read with :mod:`ast`.  Every parameter a launch path hands
the template must be one of the pipeline's options
(:class:`pipelines.options.ModerationOptions`) or a Beam pipeline option the
launcher passes through to the job (container image, disk, harness threads).
"""

from __future__ import annotations

import argparse
import ast
import os
import pathlib
import re
import shlex
import subprocess

import dataclasses

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import ModerationOptions
from pipelines.report import ReportSettings

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PASS_THROUGH = {"sdk_container_image", "disk_size_gb", "number_of_worker_harness_threads"}
T4 = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
ENV = {"PROJECT": "demo-project", "BUCKET": "demo-bucket", "TAG": "abc123", "DRY_RUN": "1"}
IMAGE = "us-central1-docker.pkg.dev/demo-project/moderation/moderation-gpu:abc123"


def _pipeline_options() -> set[str]:
    parser = argparse.ArgumentParser()
    ModerationOptions._add_argparse_args(parser)
    return {a.dest for a in parser._actions if a.dest != "help"}


def _check_parameters(parameters: dict[str, str]) -> None:
    """Names are pipeline or pass-through options, and Beam's parser (the pipeline's included) takes every value."""
    unknown = set(parameters) - _pipeline_options() - PASS_THROUGH
    assert not unknown, f"not options of the pipeline: {sorted(unknown)}"
    assert {"input", "output"} <= set(parameters)
    parsed = PipelineOptions([f"--{k}={v}" for k, v in parameters.items()]).get_all_options(drop_default=True)
    passed = {k: v for k, v in parameters.items() if k in PASS_THROUGH}
    assert {k: str(parsed.get(k)) for k in passed} == passed


def _check_report_args(args: list[str]) -> dict[str, str]:
    """The container arguments run ``python -m pipelines.report`` with flags it knows; returns them by name."""
    assert args[:2] == ["-m", "pipelines.report"]
    flags = dict(zip(args[2::2], args[3::2]))
    known = {f"--{field.name}" for field in dataclasses.fields(ReportSettings)}
    assert set(flags) <= known and {"--input", "--output", "--compare_to", "--max_drift"} <= set(flags)
    if "${" not in flags["--max_drift"]:
        assert float(flags["--max_drift"]) >= 0
    return flags


def _script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEPLOY / name), *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **ENV, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def _gcloud_flags(command: str) -> tuple[list[str], dict[str, str]]:
    """Positional words and ``--flag=value`` pairs of one printed gcloud command line."""
    words = shlex.split(command)
    assert words[0] == "gcloud"
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
    return [w for w in words if not w.startswith("--")], flags


def _launch(*args: str, **env: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    result = _script("launch.sh", *args, **env)
    assert result.returncode == 0, result.stderr
    positional, flags = _gcloud_flags(result.stdout.strip())
    assert flags["parameters"].startswith("^~^")
    parameters = dict(p.split("=", 1) for p in flags["parameters"][3:].split("~"))
    return positional, flags, parameters


# --- deploy/launch.sh ---------------------------------------------------------------------


def test_launch_runs_the_template_on_t4_workers_with_one_sdk_process():
    inputs = "gs://demo-bucket/posts/dt=2025-01-31/*.jsonl.gz,gs://demo-bucket/late/*.jsonl.gz"
    positional, flags, parameters = _launch(inputs, "gs://demo-bucket/out/dt=2025-01-31", "threshold=hate=0.5")
    assert positional[:4] == ["gcloud", "dataflow", "flex-template", "run"]
    assert flags["template-file-gcs-location"] == "gs://demo-bucket/templates/moderation-gpu.json"
    assert flags["worker-machine-type"] == "n1-standard-4"
    assert flags["additional-experiments"].split(",") == [T4, "no_use_multiple_sdk_containers"]
    assert parameters["input"] == inputs, "a comma inside the input patterns must not split the parameter"
    assert parameters["threshold"] == "hate=0.5"
    assert parameters["sdk_container_image"] == IMAGE
    _check_parameters(parameters)


def test_launch_on_l4_uses_a_g2_machine():
    _, flags, _ = _launch("gs://b/in/*.jsonl", "gs://b/out", GPU_TYPE="nvidia-l4")
    assert flags["worker-machine-type"] == "g2-standard-4"
    assert "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" in flags["additional-experiments"]


def test_launch_on_tpu_takes_a_v5e_host_with_one_process():
    _, flags, parameters = _launch("gs://b/in/*.jsonl", "gs://b/out", ACCELERATOR="tpu", IMAGE="tpu:1")
    assert flags["worker-machine-type"] == "ct5lp-hightpu-1t"
    assert flags["additional-experiments"].split(",") == [
        "worker_accelerator=type:tpu-v5-lite-podslice;topology:1x1",
        "no_use_multiple_sdk_containers",
    ]
    assert flags["template-file-gcs-location"].endswith("/moderation-tpu.json")
    assert parameters["sdk_container_image"] == "tpu:1"


def test_launch_on_cpu_keeps_dataflow_defaults():
    _, flags, parameters = _launch("gs://b/in/*.jsonl", "gs://b/out", ACCELERATOR="cpu")
    assert "additional-experiments" not in flags
    assert "number_of_worker_harness_threads" not in parameters
    _check_parameters(parameters)


def test_launch_refuses_missing_arguments_and_settings():
    assert _script("launch.sh").returncode == 2
    missing = _script("launch.sh", "gs://b/in", "gs://b/out", PROJECT="")
    assert missing.returncode != 0 and "PROJECT" in missing.stderr
    bad = _script("launch.sh", "gs://b/in", "gs://b/out", ACCELERATOR="fpga")
    assert bad.returncode == 2 and "ACCELERATOR" in bad.stderr


def test_build_pushes_the_image_the_template_points_to():
    result = _script("build_template.sh")
    assert result.returncode == 0, result.stderr
    submit, build = [line for line in result.stdout.splitlines() if line.startswith("gcloud ")]
    _, submit_flags = _gcloud_flags(submit)
    assert submit_flags["config"] == "deploy/cloudbuild.yaml"
    assert f"_IMAGE={IMAGE}" in submit_flags["substitutions"].split(",")
    positional, build_flags = _gcloud_flags(build)
    assert positional[1:5] == ["dataflow", "flex-template", "build", "gs://demo-bucket/templates/moderation-gpu.json"]
    assert build_flags["image"] == IMAGE
    assert build_flags["metadata-file"] == "deploy/flex_template/metadata.json"
    assert (ROOT / build_flags["metadata-file"]).is_file()
    recipe = yaml.safe_load((DEPLOY / "cloudbuild.yaml").read_text())
    assert "--file=deploy/Dockerfile" in recipe["steps"][0]["args"]
    assert recipe["images"] == ["${_IMAGE}"]
    # The large model's encoder stays out of the image unless asked for, and reaches the build when asked.
    assert "_LARGE_MODEL=false" in submit_flags["substitutions"].split(",")
    assert "--build-arg=LARGE_MODEL=${_LARGE_MODEL}" in recipe["steps"][0]["args"]
    large = _script("build_template.sh", LARGE_MODEL="true")
    assert "_LARGE_MODEL=true" in large.stdout


# --- deploy/scheduler.sh + deploy/workflow/moderation_nightly.yaml -------------------------


def _workflow_steps() -> dict[str, dict]:
    workflow = yaml.safe_load((DEPLOY / "workflow" / "moderation_nightly.yaml").read_text())
    return {name: body for step in workflow["main"]["steps"] for name, body in step.items()}


def _scheduler_output() -> tuple[dict[str, str], list[str]]:
    result = _script("scheduler.sh", SCHEDULER_SERVICE_ACCOUNT="sched@demo-project.iam.gserviceaccount.com")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    env = yaml.safe_load("\n".join(line for line in lines if not line.startswith("gcloud ")))
    return env, [line for line in lines if line.startswith("gcloud ")]


def test_scheduler_starts_the_workflow_nightly_with_an_oauth_token():
    _, commands = _scheduler_output()
    _, deploy, create = commands
    positional, deploy_flags = _gcloud_flags(deploy)
    assert positional[1:4] == ["workflows", "deploy", "moderation-nightly"]
    assert deploy_flags["source"].endswith("deploy/workflow/moderation_nightly.yaml")
    positional, flags = _gcloud_flags(create)
    assert positional[1:5] == ["scheduler", "jobs", "create", "http"]
    assert flags["schedule"] == "0 3 * * *" and flags["http-method"] == "POST"
    assert flags["uri"].endswith("/workflows/moderation-nightly/executions")
    assert flags["oauth-service-account-email"] == "sched@demo-project.iam.gserviceaccount.com"
    assert flags["oauth-token-scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert flags["message-body"] == '{"argument": "{}"}'


def test_scheduler_deploys_the_report_job_from_the_pipeline_image():
    env, commands = _scheduler_output()
    report_job = commands[0]
    positional, flags = _gcloud_flags(report_job)
    assert positional[1:5] == ["run", "jobs", "deploy", env["REPORT_JOB"]]
    assert flags["image"] == IMAGE and flags["command"] == "python"
    assert flags["args"].split(",") == ["-m", "pipelines.report"]
    assert flags["max-retries"] == "0", "a report that found drift must fail, not run again"
    assert float(env["MAX_DRIFT"]) == 0.25 and "{date}" in env["REPORT_PATTERN"]


def test_workflow_reports_on_the_day_after_its_job_is_done_against_the_previous_day():
    steps = _workflow_steps()
    done = steps["decide"]["switch"][0]
    assert "JOB_STATE_DONE" in done["condition"] and done["next"] == "report_request"
    assign = {k: v for item in steps["report_request"]["assign"] for k, v in item.items()}
    assert 'time.parse(day + "T00:00:00Z") - 86400' in assign["previous_day"]
    flags = _check_report_args(assign["report_args"])
    assert flags["--input"] == "${parameters.output}"
    assert '"{date}", previous_day' in flags["--compare_to"] and 'OUTPUT_PATTERN' in flags["--compare_to"]
    assert flags["--output"] == "${report_folder}" and "REPORT_PATTERN" in assign["report_folder"]
    report = steps["report"]
    assert report["call"] == "googleapis.run.v2.projects.locations.jobs.run"
    assert 'sys.get_env("REPORT_JOB")' in report["args"]["name"]
    assert report["args"]["body"]["overrides"]["containerOverrides"][0]["args"] == "${report_args}"
    assert steps["done"]["return"]["state"] == "JOB_STATE_DONE"


def test_workflow_reads_exactly_the_settings_the_scheduler_script_writes():
    env, _ = _scheduler_output()
    source = (DEPLOY / "workflow" / "moderation_nightly.yaml").read_text()
    read = set(re.findall(r'sys\.get_env\("(\w+)"\)', source)) - {"GOOGLE_CLOUD_PROJECT_ID"}
    assert read == set(env)
    assert "{date}" in env["INPUT_PATTERN"] and "{date}" in env["OUTPUT_PATTERN"]
    assert env["EXPERIMENTS"].split(",") == [T4, "no_use_multiple_sdk_containers"]


def test_workflow_launches_the_template_for_the_given_or_previous_day():
    steps = _workflow_steps()
    assert "sys.now() - 86400" in steps["init"]["assign"][2]["yesterday"]
    assert 'map.get(args, "date")' in steps["init"]["assign"][3]["day"]
    launch = steps["launch"]
    assert launch["call"] == "http.post"
    assert launch["args"]["url"].endswith('/flexTemplates:launch"}')
    assert launch["args"]["auth"] == {"type": "OAuth2"}
    parameters = dict(steps["build_request"]["assign"][0]["parameters"])
    accelerator = steps["gpu_or_tpu_settings"]["switch"][0]["steps"][0]["accelerator"]["assign"]
    parameters.update({k.split(".", 1)[1]: v for item in accelerator for k, v in item.items() if k.startswith("parameters.")})
    unknown = set(parameters) - _pipeline_options() - PASS_THROUGH
    assert not unknown and {"input", "output"} <= set(parameters)
    assert '"{date}", day' in parameters["input"] and '"{date}", day' in parameters["output"]


# --- deploy/airflow/moderation_dag.py ----------------------------------------------------


class _Module:
    """Module-level constants and calls of the DAG file, read with ast (Airflow is not installed)."""

    def __init__(self, path: pathlib.Path):
        self.tree = ast.parse(path.read_text())
        self.assigned = {
            node.targets[0].id: node.value
            for node in self.tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }

    def value(self, node: ast.AST):
        """A literal, with module-level constant names replaced by their values."""
        resolved = self

        class Inline(ast.NodeTransformer):
            def visit_Name(self, name: ast.Name) -> ast.AST:
                return self.visit(resolved.assigned[name.id])

        return ast.literal_eval(Inline().visit(ast.parse(ast.unparse(node), mode="eval")).body)

    def calls(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]

    def imported(self, name: str) -> str:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
                return node.module
        raise AssertionError(f"{name} is not imported")


@pytest.fixture(scope="module")
def dag() -> _Module:
    return _Module(DEPLOY / "airflow" / "moderation_dag.py")


def _keywords(call: ast.Call) -> dict[str, ast.AST]:
    return {k.arg: k.value for k in call.keywords}


def test_dag_runs_nightly_over_the_previous_days_interval(dag):
    assert dag.imported("CronDataIntervalTimetable") == "airflow.timetables.interval"
    (timetable,) = dag.calls("CronDataIntervalTimetable")
    assert dag.value(timetable.args[0]) == "0 3 * * *"
    assert dag.value(_keywords(timetable)["timezone"]) == "UTC"
    (dag_call,) = dag.calls("DAG")
    keywords = _keywords(dag_call)
    assert ast.unparse(keywords["schedule"]) == "SCHEDULE" and dag.assigned["SCHEDULE"] is timetable
    assert dag.value(keywords["catchup"]) is False


def test_dag_launches_the_flex_template_with_dated_paths_and_gpu_settings(dag):
    assert dag.imported("DataflowStartFlexTemplateOperator") == "airflow.providers.google.cloud.operators.dataflow"
    (operator,) = dag.calls("DataflowStartFlexTemplateOperator")
    keywords = _keywords(operator)
    assert dag.value(keywords["wait_until_finished"]) is True
    body = dag.value(keywords["body"])["launchParameter"]
    assert "{{ ds_nodash }}" in body["jobName"]
    _check_parameters(body["parameters"])
    assert "dt={{ ds }}/" in body["parameters"]["input"] and body["parameters"]["output"].endswith("dt={{ ds }}")
    assert body["environment"]["additionalExperiments"] == [T4, "no_use_multiple_sdk_containers"]
    assert body["environment"]["machineType"] == "n1-standard-4"


def test_dag_reruns_replace_a_day_only_once_its_new_outputs_are_complete(dag):
    (operator,) = dag.calls("DataflowStartFlexTemplateOperator")
    parameters = dag.value(_keywords(operator)["body"])["launchParameter"]["parameters"]
    assert parameters["overwrite"] == "true"
    assert not dag.calls("GCSDeleteObjectsOperator"), "emptying the day first would leave readers an empty day"


def test_dag_reports_on_each_day_after_moderating_it(dag):
    assert dag.imported("CloudRunExecuteJobOperator") == "airflow.providers.google.cloud.operators.cloud_run"
    (operator,) = dag.calls("CloudRunExecuteJobOperator")
    keywords = _keywords(operator)
    assert "report_job" in dag.value(keywords["job_name"])
    (container,) = dag.value(keywords["overrides"])["container_overrides"]
    flags = _check_report_args(container["args"])
    moderation = dag.value(dag.assigned["LAUNCH_BODY"])["launchParameter"]["parameters"]
    assert flags["--input"] == moderation["output"]
    assert flags["--compare_to"] == moderation["output"].replace("{{ ds }}", "{{ macros.ds_add(ds, -1) }}")
    assert flags["--output"].endswith("moderation-reports/dt={{ ds }}")
    order = [n for n in ast.walk(dag.tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.RShift)]
    assert [(ast.unparse(n.left), ast.unparse(n.right)) for n in order] == [("moderate", "report")]
