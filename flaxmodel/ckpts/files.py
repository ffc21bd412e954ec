"""Reading and writing checkpoint files on local disk or any Beam filesystem.

Local paths use plain file I/O; paths with a scheme (``gs://``, ``s3://``, ...)
go through ``apache_beam.io.filesystems.FileSystems``, imported only then, so the
model package does not need Beam for local use.
"""

from __future__ import annotations

import os
import re

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_remote(path: str) -> bool:
    return bool(_SCHEME.match(str(path)))


def join(folder: str, name: str) -> str:
    folder = str(folder)
    return folder.rstrip("/") + "/" + name if is_remote(folder) else os.path.join(folder, name)


def exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path)
    return os.path.isfile(path)


def is_dir(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path) or FileSystems.exists(join(path, "config.json"))
    return os.path.isdir(path)


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def delete(path: str) -> bool:
    """Removes one file; returns whether there was one to remove."""
    if not exists(path):
        return False
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        FileSystems.delete([path])
    else:
        os.remove(path)
    return True
