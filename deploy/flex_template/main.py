"""Flex Template entry point: builds the moderation graph from the launcher's arguments and submits it.

Dataflow's template launcher runs this file inside the image built from
``deploy/Dockerfile`` and passes every template parameter as ``--name=value``.
It builds the same graph as ``python -m pipelines.moderate``
(:func:`pipelines.moderate.build`, which fails before any data is read on a
bad flag, model or input pattern) and submits it without waiting: the launcher
only has to create the job, whose progress and counters Dataflow shows, and
waiting would hold the launcher VM for the whole run.

The workers must run this same image (it holds jax, the project and the
default model), so when the caller gives no ``--sdk_container_image`` the
image's own name, baked in at build time as ``MODERATION_SDK_CONTAINER_IMAGE``,
is added; without it Dataflow would start the stock Beam image, which lacks all
three.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipelines.moderate import build

IMAGE_ENV = "MODERATION_SDK_CONTAINER_IMAGE"
# Beam's current name for the option and its deprecated alias.
IMAGE_OPTIONS = ("--sdk_container_image", "--worker_harness_container_image")


def with_default_sdk_image(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``argv`` plus ``--sdk_container_image=<this image>`` unless an image is already given."""
    image = env.get(IMAGE_ENV, "")
    given = any(arg.split("=", 1)[0] in IMAGE_OPTIONS for arg in argv)
    if image and not given:
        return [*argv, f"--sdk_container_image={image}"]
    return list(argv)


def submit(argv: Sequence[str], env: Mapping[str, str]) -> PipelineResult:
    """Builds the moderation graph for ``argv`` and starts it on the configured runner."""
    options = PipelineOptions(with_default_sdk_image(argv, env))
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    return pipeline.run()


if __name__ == "__main__":
    submit(sys.argv[1:], os.environ)
