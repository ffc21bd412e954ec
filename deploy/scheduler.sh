#!/usr/bin/env bash
# Nightly runs: deploys the launch workflow and a Cloud Scheduler job that starts it every night.
#
#   PROJECT=my-project BUCKET=my-bucket TAG=<image tag> \
#   SCHEDULER_SERVICE_ACCOUNT=moderation-scheduler@my-project.iam.gserviceaccount.com \
#   [SCHEDULE="0 3 * * *"] [INPUT_PATTERN=...] [OUTPUT_PATTERN=...] deploy/scheduler.sh
#
# Cloud Scheduler sends a fixed request body: it cannot write tonight's date into
# the input path.  So the Scheduler job POSTs (with an OAuth token of
# SCHEDULER_SERVICE_ACCOUNT) to the Workflows executions API, and the workflow
# (deploy/workflow/moderation_nightly.yaml) computes yesterday's date, substitutes
# it for {date} in INPUT_PATTERN / OUTPUT_PATTERN and POSTs to Dataflow's
# flexTemplates:launch endpoint, then waits for the job; then it runs the Cloud
# Run job REPORT_JOB (deployed here from the same image: python -m
# pipelines.report) over the day's outputs against the previous day's, into
# REPORT_PATTERN, failing when the drift exceeds MAX_DRIFT.  Re-run a day with
#   gcloud workflows run moderation-nightly --location=REGION --data='{"date":"2025-01-31"}'
# Running this script again updates the workflow and the Scheduler job in place.
# DRY_RUN=1 prints the commands and the workflow's environment file.
set -euo pipefail
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
: "${SCHEDULER_SERVICE_ACCOUNT:?set SCHEDULER_SERVICE_ACCOUNT (runs the workflow and launches the job)}"
WORKFLOW=${WORKFLOW:-moderation-nightly}
SCHEDULER_JOB=${SCHEDULER_JOB:-moderation-nightly}
SCHEDULE=${SCHEDULE:-0 3 * * *}
TIME_ZONE=${TIME_ZONE:-Etc/UTC}
INPUT_PATTERN=${INPUT_PATTERN:-"gs://${BUCKET}/posts/dt={date}/*.jsonl.gz"}
OUTPUT_PATTERN=${OUTPUT_PATTERN:-"gs://${BUCKET}/moderation/dt={date}"}
REPORT_PATTERN=${REPORT_PATTERN:-"gs://${BUCKET}/moderation-reports/dt={date}"}
REPORT_JOB=${REPORT_JOB:-moderation-report}
# Population stability index above which a day counts as drifted (0.25: a real shift, not noise).
MAX_DRIFT=${MAX_DRIFT:-0.25}

env_file=$(mktemp)
trap 'rm -f "$env_file"' EXIT
# JSON strings are valid YAML scalars, and the values hold ':', '*', '{' and ';'.
yaml_value() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }
{
  echo "DATAFLOW_REGION: $(yaml_value "$REGION")"
  echo "TEMPLATE_PATH: $(yaml_value "$TEMPLATE_PATH")"
  echo "IMAGE: $(yaml_value "$IMAGE")"
  echo "INPUT_PATTERN: $(yaml_value "$INPUT_PATTERN")"
  echo "OUTPUT_PATTERN: $(yaml_value "$OUTPUT_PATTERN")"
  echo "MACHINE_TYPE: $(yaml_value "$MACHINE_TYPE")"
  echo "MAX_WORKERS: $(yaml_value "$MAX_WORKERS")"
  echo "DISK_SIZE_GB: $(yaml_value "$DISK_SIZE_GB")"
  echo "EXPERIMENTS: $(yaml_value "$EXPERIMENTS")"
  echo "HARNESS_THREADS: $(yaml_value "$HARNESS_THREADS")"
  echo "TEMP_LOCATION: $(yaml_value "$TEMP_LOCATION")"
  echo "STAGING_LOCATION: $(yaml_value "$STAGING_LOCATION")"
  echo "WORKER_SERVICE_ACCOUNT: $(yaml_value "${WORKER_SERVICE_ACCOUNT:-}")"
  echo "REPORT_JOB: $(yaml_value "$REPORT_JOB")"
  echo "REPORT_PATTERN: $(yaml_value "$REPORT_PATTERN")"
  echo "MAX_DRIFT: $(yaml_value "$MAX_DRIFT")"
} >"$env_file"
if [[ -n ${DRY_RUN:-} ]]; then
  cat "$env_file"
fi

# The report runs on CPU (no model): the image's jax is told so, and a failed report (drift) is not retried.
report_identity=()
if [[ -n ${WORKER_SERVICE_ACCOUNT:-} ]]; then
  report_identity=(--service-account="$WORKER_SERVICE_ACCOUNT")
fi
run gcloud run jobs deploy "$REPORT_JOB" \
  --project="$PROJECT" \
  --region="$REGION" \
  --image="$IMAGE" \
  --command=python \
  --args=-m,pipelines.report \
  --set-env-vars=JAX_PLATFORMS=cpu \
  --memory=4Gi \
  --task-timeout=3600s \
  --max-retries=0 \
  "${report_identity[@]}"

run gcloud workflows deploy "$WORKFLOW" \
  --project="$PROJECT" \
  --location="$REGION" \
  --source="$REPO_ROOT/deploy/workflow/moderation_nightly.yaml" \
  --service-account="$SCHEDULER_SERVICE_ACCOUNT" \
  --env-vars-file="$env_file"

executions="https://workflowexecutions.googleapis.com/v1/projects/${PROJECT}/locations/${REGION}/workflows/${WORKFLOW}/executions"
# The workflow reads its argument as a JSON string; {} means "yesterday".
body='{"argument": "{}"}'
common_flags=(
  --project="$PROJECT"
  --location="$REGION"
  --schedule="$SCHEDULE"
  --time-zone="$TIME_ZONE"
  --uri="$executions"
  --http-method=POST
  --message-body="$body"
  --oauth-service-account-email="$SCHEDULER_SERVICE_ACCOUNT"
  --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform
  --description="Nightly content moderation over the previous day's partition"
)
if [[ -z ${DRY_RUN:-} ]] && gcloud scheduler jobs describe "$SCHEDULER_JOB" --project="$PROJECT" --location="$REGION" >/dev/null 2>&1; then
  run gcloud scheduler jobs update http "$SCHEDULER_JOB" "${common_flags[@]}" --update-headers=Content-Type=application/json
else
  run gcloud scheduler jobs create http "$SCHEDULER_JOB" "${common_flags[@]}" --headers=Content-Type=application/json
fi
