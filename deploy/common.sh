# Settings shared by deploy/*.sh: names of the image and template, and the worker shape per accelerator.
# Sourced, not run.  Every value can be overridden from the environment; see deploy/README.md.
# shellcheck shell=bash

: "${PROJECT:?set PROJECT to the Google Cloud project id}"
: "${BUCKET:?set BUCKET to the Cloud Storage bucket name (no gs://)}"
REGION=${REGION:-us-central1}
REPOSITORY=${REPOSITORY:-moderation}
ACCELERATOR=${ACCELERATOR:-gpu}
# true adds the large model's encoder to the image (jobs with --model large); see deploy/Dockerfile.
LARGE_MODEL=${LARGE_MODEL:-false}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${TAG:-$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)}
IMAGE=${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/moderation-${ACCELERATOR}:${TAG}}
TEMPLATE_PATH=${TEMPLATE_PATH:-gs://${BUCKET}/templates/moderation-${ACCELERATOR}.json}
TEMP_LOCATION=${TEMP_LOCATION:-gs://${BUCKET}/dataflow/temp}
STAGING_LOCATION=${STAGING_LOCATION:-gs://${BUCKET}/dataflow/staging}
MAX_WORKERS=${MAX_WORKERS:-10}
# The image is large (CUDA wheels alone are several GB): leave room to pull and unpack it.
DISK_SIZE_GB=${DISK_SIZE_GB:-50}

# One SDK process per worker VM (no_use_multiple_sdk_containers): the accelerator
# is one device that a single process owns (a TPU cannot be shared between
# processes at all), and its threads share one loaded model.  HARNESS_THREADS
# bounds how many bundles that process works on at once: enough to keep
# tokenizing while the device runs a batch, few enough to bound host memory.
case "$ACCELERATOR" in
  gpu)
    GPU_TYPE=${GPU_TYPE:-nvidia-tesla-t4}
    # L4 GPUs only come on G2 machines; T4 (and V100, P100) on N1.
    case "$GPU_TYPE" in
      nvidia-l4) MACHINE_TYPE=${MACHINE_TYPE:-g2-standard-4} ;;
      *) MACHINE_TYPE=${MACHINE_TYPE:-n1-standard-4} ;;
    esac
    ACCELERATOR_OPTION="worker_accelerator=type:${GPU_TYPE};count:1;install-nvidia-driver"
    EXPERIMENTS=${EXPERIMENTS:-${ACCELERATOR_OPTION},no_use_multiple_sdk_containers}
    HARNESS_THREADS=${HARNESS_THREADS:-4}
    ;;
  tpu)
    TPU_TYPE=${TPU_TYPE:-tpu-v5-lite-podslice}
    TPU_TOPOLOGY=${TPU_TOPOLOGY:-1x1}
    MACHINE_TYPE=${MACHINE_TYPE:-ct5lp-hightpu-1t}
    ACCELERATOR_OPTION="worker_accelerator=type:${TPU_TYPE};topology:${TPU_TOPOLOGY}"
    EXPERIMENTS=${EXPERIMENTS:-${ACCELERATOR_OPTION},no_use_multiple_sdk_containers}
    HARNESS_THREADS=${HARNESS_THREADS:-4}
    ;;
  cpu)
    MACHINE_TYPE=${MACHINE_TYPE:-n1-standard-4}
    # CPU workers keep Dataflow's default of one SDK process per vCPU.
    EXPERIMENTS=${EXPERIMENTS:-}
    HARNESS_THREADS=${HARNESS_THREADS:-}
    ;;
  *)
    echo "ACCELERATOR must be gpu, tpu or cpu, got '$ACCELERATOR'" >&2
    exit 2
    ;;
esac

# Runs a command, or with DRY_RUN=1 prints it (shell-quoted) instead: how the
# scripts are checked without a cloud project (tests/deploy).
run() {
  if [[ -n ${DRY_RUN:-} ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}
