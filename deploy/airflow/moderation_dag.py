"""Airflow DAG: every night, moderate the previous day's partition on Dataflow with the Flex Template.

A run handles the day its data interval starts, ``{{ ds }}``: the timetable is
an interval one, so the run that starts at 03:00 UTC on Feb 1 has ``ds`` =
2025-01-31 and reads ``posts/dt=2025-01-31/``.  It launches the Flex Template
with ``overwrite=true`` and waits for the job, failing the task if the job
fails: a killed or failed attempt leaves nothing in the day's folder, and a
re-run of a completed day replaces its outputs only once the new ones are
complete, so readers never see the day empty or mixed.  Re-run a day by
clearing its DAG run; backfill with Airflow's backfill command.

Then task ``report`` runs ``python -m pipelines.report`` as the Cloud Run job
``report_job`` (the same image; deploy/README.md, "Run reports") over the day's
outputs, against the previous day's, writing ``moderation-reports/dt={{ ds }}/``;
the job exits 1, failing the task, when the drift (largest population stability
index) exceeds ``MAX_DRIFT``, so the DAG run's state is the alert.

Deployment settings come from the Airflow Variable ``moderation`` (JSON with
project, region, bucket, template_path, image, report_job; see deploy/README.md), read
through templates at run time so parsing this file needs no database.  The
worker shape (GPU type, machine type) matches deploy/common.sh's defaults.
"""

from __future__ import annotations

import datetime

from airflow.providers.google.cloud.operators.cloud_run import CloudRunExecuteJobOperator
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.timetables.interval import CronDataIntervalTimetable

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

SCHEDULE = CronDataIntervalTimetable("0 3 * * *", timezone="UTC")
PROJECT = "{{ var.json.moderation.project }}"
REGION = "{{ var.json.moderation.region }}"
INPUT = "gs://{{ var.json.moderation.bucket }}/posts/dt={{ ds }}/*.jsonl.gz"
OUTPUT = "gs://{{ var.json.moderation.bucket }}/moderation/dt={{ ds }}"
PREVIOUS_OUTPUT = "gs://{{ var.json.moderation.bucket }}/moderation/dt={{ macros.ds_add(ds, -1) }}"
REPORT = "gs://{{ var.json.moderation.bucket }}/moderation-reports/dt={{ ds }}"
# Population stability index above which a day's labels or scores count as drifted (0.25: a real shift).
MAX_DRIFT = "0.25"

# The Cloud Run job's container runs `python`; these are its arguments.
REPORT_OVERRIDES = {
    "container_overrides": [
        {
            "args": [
                "-m", "pipelines.report", "--input", OUTPUT, "--output", REPORT,
                "--compare_to", PREVIOUS_OUTPUT, "--max_drift", MAX_DRIFT,
            ]
        }
    ]
}  # fmt: skip

# One T4 per n1-standard-4 worker, one SDK process owning it (deploy/README.md, "GPU workers").
LAUNCH_BODY = {
    "launchParameter": {
        "jobName": "moderation-{{ ds_nodash }}",
        "containerSpecGcsPath": "{{ var.json.moderation.template_path }}",
        "parameters": {
            "input": INPUT,
            "output": OUTPUT,
            "overwrite": "true",
            "sdk_container_image": "{{ var.json.moderation.image }}",
            "disk_size_gb": "50",
            "number_of_worker_harness_threads": "4",
        },
        "environment": {
            "machineType": "n1-standard-4",
            "maxWorkers": 10,
            "tempLocation": "gs://{{ var.json.moderation.bucket }}/dataflow/temp",
            "stagingLocation": "gs://{{ var.json.moderation.bucket }}/dataflow/staging",
            "additionalExperiments": [
                "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
                "no_use_multiple_sdk_containers",
            ],
        },
    }
}

with DAG(
    dag_id="moderation_nightly",
    schedule=SCHEDULE,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=datetime.timedelta(hours=12),
    tags=["moderation", "dataflow"],
) as dag:
    moderate = DataflowStartFlexTemplateOperator(
        task_id="moderate",
        project_id=PROJECT,
        location=REGION,
        body=LAUNCH_BODY,
        wait_until_finished=True,
    )
    report = CloudRunExecuteJobOperator(
        task_id="report",
        project_id=PROJECT,
        region=REGION,
        job_name="{{ var.json.moderation.report_job }}",
        overrides=REPORT_OVERRIDES,
    )
    moderate >> report
