"""``python -m flaxmodel.training`` and the ``flaxmodel-train`` console script (see :mod:`~flaxmodel.training.cli`)."""

import sys

from flaxmodel.training.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
