#!/usr/bin/env bash
# Builds and pushes the worker/launcher image, then writes the Flex Template spec to Cloud Storage.
#
#   PROJECT=my-project BUCKET=my-bucket [ACCELERATOR=gpu|tpu|cpu] [LARGE_MODEL=true|false] [BUILDER=cloudbuild|docker] deploy/build_template.sh
#
# BUILDER=cloudbuild (default) builds remotely with Cloud Build (deploy/cloudbuild.yaml);
# BUILDER=docker builds with the local Docker (BuildKit) and pushes to Artifact Registry.
# Prints the image and template path to use with deploy/launch.sh and deploy/scheduler.sh.
set -euo pipefail
# shellcheck source=deploy/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BUILDER=${BUILDER:-cloudbuild}
cd "$REPO_ROOT"

case "$BUILDER" in
  cloudbuild)
    run gcloud builds submit . \
      --project="$PROJECT" \
      --region="$REGION" \
      --config=deploy/cloudbuild.yaml \
      --substitutions="_IMAGE=${IMAGE},_ACCELERATOR=${ACCELERATOR},_LARGE_MODEL=${LARGE_MODEL}"
    ;;
  docker)
    run gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
    run docker build . \
      --file=deploy/Dockerfile \
      --build-arg="ACCELERATOR=${ACCELERATOR}" \
      --build-arg="LARGE_MODEL=${LARGE_MODEL}" \
      --build-arg="SDK_CONTAINER_IMAGE=${IMAGE}" \
      --tag="$IMAGE"
    run docker push "$IMAGE"
    ;;
  *)
    echo "BUILDER must be cloudbuild or docker, got '$BUILDER'" >&2
    exit 2
    ;;
esac

run gcloud dataflow flex-template build "$TEMPLATE_PATH" \
  --project="$PROJECT" \
  --image="$IMAGE" \
  --sdk-language=PYTHON \
  --metadata-file=deploy/flex_template/metadata.json

echo "image:    $IMAGE"
echo "template: $TEMPLATE_PATH"
