#!/usr/bin/env bash
# Launches one moderation job on Dataflow from the Flex Template built by deploy/build_template.sh.
#
#   PROJECT=my-project BUCKET=my-bucket TAG=<image tag> [ACCELERATOR=gpu|tpu|cpu] \
#     deploy/launch.sh INPUT_PATTERNS OUTPUT_DIR [NAME=VALUE ...]
#
# INPUT_PATTERNS: gs:// file patterns, comma-separated for several; OUTPUT_DIR: a
# gs:// folder (one holding a complete run needs overwrite=true).  NAME=VALUE pairs are further
# pipeline options (see deploy/flex_template/metadata.json), e.g. threshold=hate=0.5
# precision=bfloat16 model=gs://my-bucket/models/v3.  TAG (or IMAGE) must name the
# image the template was built with.  DRY_RUN=1 prints the gcloud command.
set -euo pipefail
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "${BASH_SOURCE[0]}" >&2
  exit 2
fi
input=$1
output=$2
shift 2
JOB_NAME=${JOB_NAME:-moderation-$(date -u +%Y%m%d-%H%M%S)}

# Template parameters are separated by "~" (gcloud's ^~^ syntax) because input
# patterns may hold commas.  sdk_container_image, disk_size_gb and
# number_of_worker_harness_threads are Beam pipeline options the launcher
# passes on to the job unchanged.
parameters=("input=${input}" "output=${output}" "sdk_container_image=${IMAGE}" "disk_size_gb=${DISK_SIZE_GB}")
if [[ -n $HARNESS_THREADS ]]; then
  parameters+=("number_of_worker_harness_threads=${HARNESS_THREADS}")
fi
parameters+=("$@")
joined=$(IFS='~'; echo "${parameters[*]}")

flags=(
  --project="$PROJECT"
  --region="$REGION"
  --template-file-gcs-location="$TEMPLATE_PATH"
  --temp-location="$TEMP_LOCATION"
  --staging-location="$STAGING_LOCATION"
  --worker-machine-type="$MACHINE_TYPE"
  --max-workers="$MAX_WORKERS"
  --parameters="^~^${joined}"
)
if [[ -n $EXPERIMENTS ]]; then
  flags+=(--additional-experiments="$EXPERIMENTS")
fi
if [[ -n ${SERVICE_ACCOUNT:-} ]]; then
  flags+=(--service-account-email="$SERVICE_ACCOUNT")
fi

run gcloud dataflow flex-template run "$JOB_NAME" "${flags[@]}"
