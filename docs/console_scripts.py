"""A Sphinx directive that documents every console script ``setup.py`` declares.

``{console-scripts}`` reads the ``console_scripts`` entry points from
``setup.py`` itself (its source, not an installed copy's metadata), and for each
``NAME=module:function`` writes a section: the command's name, the module's
docstring and the function. A job added to ``setup.py`` appears in the API
reference without editing the page, and a job whose module cannot be imported
or whose docstring Sphinx cannot read fails the build like any other warning.
"""

from __future__ import annotations

import ast
import os

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

SETUP_PY = os.path.join(os.path.dirname(__file__), "..", "setup.py")


def console_scripts(setup_py: str = SETUP_PY) -> list[tuple[str, str, str]]:
    """``(name, module, function)`` of each console script in ``setup.py``'s ``setup(entry_points=...)``."""
    with open(setup_py, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            scripts = []
            for spec in entry_points.get("console_scripts", []):
                name, target = (part.strip() for part in spec.split("=", 1))
                module, function = target.split(":", 1)
                scripts.append((name, module, function))
            return scripts
    raise ValueError(f"{setup_py}: no entry_points in setup()")


class ConsoleScripts(SphinxDirective):
    """Documents every console script of ``setup.py``: its module's docstring and its entry function."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(os.path.abspath(SETUP_PY))
        sections = []
        for name, module, function in console_scripts():
            section = nodes.section(ids=[nodes.make_id(f"command-{name}")], names=[nodes.fully_normalize_name(name)])
            section += nodes.title(text=name)
            # MyST parses a directive's nested content as Markdown; autodoc writes reStructuredText.
            lines = [
                f"`{name}` runs {{py:func}}`{module}.{function}`.",
                "",
                "```{eval-rst}",
                f".. automodule:: {module}",
                "   :no-members:",
                "",
                f".. autofunction:: {module}.{function}",
                "```",
            ]
            self.state.nested_parse(StringList(lines, source="setup.py"), self.content_offset, section)
            sections.append(section)
        return sections


def setup(app):
    app.add_directive("console-scripts", ConsoleScripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
