"""Airflow DAG: every night, moderate the previous day's partition on Dataflow with the Flex Template.

A run handles the day its data interval starts, ``{{ ds }}``: the timetable is
an interval one, so the run that starts at 03:00 UTC on Feb 1 has ``ds`` =
2025-01-31 and reads ``posts/dt=2025-01-31/``.  It first empties that day's
output folder (the pipeline refuses a folder holding earlier outputs, so a
re-run replaces them rather than mixing with them), then launches the Flex
Template and waits for the job, failing the task if the job fails.  Re-run a
day by clearing its DAG run; backfill with Airflow's backfill command.

Deployment settings come from the Airflow Variable ``moderation`` (JSON with
project, region, bucket, template_path, image; see deploy/README.md), read
through templates at run time so parsing this file needs no database.  The
worker shape (GPU type, machine type) matches deploy/common.sh's defaults.
"""

from __future__ import annotations

import datetime

from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.providers.google.cloud.operators.gcs import GCSDeleteObjectsOperator
from airflow.timetables.interval import CronDataIntervalTimetable

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

SCHEDULE = CronDataIntervalTimetable("0 3 * * *", timezone="UTC")
PROJECT = "{{ var.json.moderation.project }}"
REGION = "{{ var.json.moderation.region }}"
BUCKET = "{{ var.json.moderation.bucket }}"
INPUT = "gs://{{ var.json.moderation.bucket }}/posts/dt={{ ds }}/*.jsonl.gz"
OUTPUT_PREFIX = "moderation/dt={{ ds }}/"
OUTPUT = "gs://{{ var.json.moderation.bucket }}/moderation/dt={{ ds }}"

# One T4 per n1-standard-4 worker, one SDK process owning it (deploy/README.md, "GPU workers").
LAUNCH_BODY = {
    "launchParameter": {
        "jobName": "moderation-{{ ds_nodash }}",
        "containerSpecGcsPath": "{{ var.json.moderation.template_path }}",
        "parameters": {
            "input": INPUT,
            "output": OUTPUT,
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
    clear_output = GCSDeleteObjectsOperator(
        task_id="clear_output",
        bucket_name=BUCKET,
        prefix=OUTPUT_PREFIX,
    )
    moderate = DataflowStartFlexTemplateOperator(
        task_id="moderate",
        project_id=PROJECT,
        location=REGION,
        body=LAUNCH_BODY,
        wait_until_finished=True,
    )
    clear_output >> moderate
