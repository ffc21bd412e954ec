"""Builds the documentation site: ``python docs/build.py [OUTPUT]`` (``make docs`` writes ``out/docs``).

The one place the build's flags live, for ``make docs`` and for the test that
runs the build inside ``make test`` (``tests/test_docs.py``): warnings are
errors (``-W``), all of them reported before it fails (``--keep-going``), and
every page is read afresh (``-E``), so a broken link, a missing page, anchor or
include, or a docstring Sphinx cannot read exits non-zero. Exit status: 0
built without a warning; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(DOCS, "..", "out", "docs")
FLAGS = ["-W", "--keep-going", "-E", "-q", "-b", "html"]


def build(output: str = DEFAULT_OUTPUT, source: str = DOCS) -> int:
    """Builds the HTML site from ``source`` into ``output``; returns Sphinx's exit status."""
    from sphinx.cmd.build import build_main

    return build_main([*FLAGS, source, output])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python docs/build.py [OUTPUT]", file=sys.stderr)
        return 2
    output = os.path.abspath(args[0] if args else DEFAULT_OUTPUT)
    status = build(output)
    if status == 0:
        print(f"docs: built without warnings -> {os.path.join(output, 'index.html')}")
    return status


if __name__ == "__main__":
    sys.exit(main())
