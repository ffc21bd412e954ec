"""Flex Template entry point: runs the moderation pipeline with the launcher's arguments.

Dataflow's template launcher runs this file inside the image built from
``deploy/Dockerfile`` and passes every template parameter as ``--name=value``.
The workers must run that same image (it holds jax, the project and the default
model), so when the caller gives no ``--sdk_container_image`` the image's own
name, baked in at build time as ``MODERATION_SDK_CONTAINER_IMAGE``, is added;
without it Dataflow would start the stock Beam image, which lacks all three.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Sequence

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


if __name__ == "__main__":
    from pipelines.moderate import main

    main(with_default_sdk_image(sys.argv[1:], os.environ))
