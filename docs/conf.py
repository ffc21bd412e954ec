"""Sphinx configuration of the documentation site (``make docs``; ``docs/build.py`` has the flags).

Pages are MyST Markdown; the API reference is autodoc over the public API's
Google-style docstrings (napoleon). Warnings are errors (``build.py`` passes
``-W``), so a broken link, a missing page or anchor, or a docstring Sphinx
cannot read fails the build.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(__file__))

project = "Moderation engine"
author = "The moderation engine's authors"
copyright = "2026, " + author

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "console_scripts",  # docs/console_scripts.py: the jobs' entry points, read from the installed package
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "README.md"]
root_doc = "index"

# MyST: a link to a heading ([text](page.md#heading-slug)) must name a real one, like a link to a page.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# API reference: members in source order, type hints shown in the signature, Google-style sections.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# A NamedTuple's "Attributes:" become fields of its description, not a second entry beside autodoc's own.
napoleon_use_ivar = True

html_theme = "furo"
html_title = "Moderation engine"
html_static_path: list[str] = []
html_show_sourcelink = False

# The package's own version, where it is installed (it is: the docs extra installs the project).
try:
    release = metadata.version("moderation-engine")
except metadata.PackageNotFoundError:  # pragma: no cover - a build without the project installed
    release = "unknown"
version = release


def _napoleon_properties_as_methods(app) -> None:
    """Napoleon reads a property's first line "text: more" as "type: description"; here it reads them as prose.

    The public API's property docstrings are sentences ("Distinct shapes run so far, rows rounded up to a
    multiple of the devices: each compiled once."), and their types are in the signatures, so napoleon's
    own handler is swapped for one that parses a property like a method's docstring.
    """
    from sphinx.ext.napoleon import _process_docstring

    listeners = app.events.listeners["autodoc-process-docstring"]
    for listener in list(listeners):
        if listener.handler is _process_docstring:
            listeners.remove(listener)

    def process(app, what, name, obj, options, lines):
        _process_docstring(app, "method" if what == "property" else what, name, obj, options, lines)

    app.connect("autodoc-process-docstring", process)


def setup(app):
    app.connect("builder-inited", _napoleon_properties_as_methods)
