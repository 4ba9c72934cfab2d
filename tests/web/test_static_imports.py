"""The UI's ES modules import only downward: no module reaches itself back through its imports.

A circle of imports works in a browser only by the accident of evaluation
order (a module can see another's bindings before they are set), so it is
refused here, without a browser: the ``import``/``export ... from`` lines of
every module under ``haflowd/web/static/js`` are read and the graph is
searched for a cycle, which the failure names.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC_JS = Path(__file__).parents[2] / "haflowd/web/static/js"

#: ``import {...} from "./x.js"``, ``import x from './x.js'``, ``import "./x.js"``,
#: ``export {...} from "./x.js"`` and ``import("./x.js")``, over several lines too.
_IMPORT = re.compile(
    r"""(?:^\s*(?:import|export)\b[^;'"]*?(?:\bfrom\s*)?|\bimport\s*\(\s*)["']\./([^"'/]+\.js)["']""",
    re.MULTILINE,
)


def imports_of(source: str) -> set[str]:
    """The sibling modules one module's source imports (by file name)."""
    return set(_IMPORT.findall(source))


def import_graph(folder: Path) -> dict[str, set[str]]:
    return {path.name: imports_of(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.js"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when there is none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done and (found := visit(nxt)) is not None:
                return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (found := visit(start)) is not None:
            return found
    return None


class TestStaticImports:
    def test_no_module_imports_itself_back(self) -> None:
        """No chain of imports among the UI's modules leads back to where it started."""
        graph = import_graph(STATIC_JS)
        assert graph.get("main.js"), "the UI's modules were not found or not parsed"
        cycle = find_cycle(graph)
        assert cycle is None, "import cycle in haflowd/web/static/js: " + " -> ".join(cycle or [])

    def test_every_import_names_an_existing_module(self) -> None:
        """Each relative import names a file of the folder (so the graph above is the whole graph)."""
        graph = import_graph(STATIC_JS)
        missing = {(name, target) for name, targets in graph.items() for target in targets if target not in graph}
        assert not missing


class TestFindCycle:
    @pytest.mark.parametrize(
        ("sources", "cycle"),
        [
            ({"a.js": 'import { b } from "./b.js";', "b.js": "export const b = 1;"}, None),
            (
                {
                    "mission.js": 'import { renderGate } from "./gate.js";',
                    "gate.js": 'import {\n  continueMission,\n} from "./mission.js";',
                },
                ["gate.js", "mission.js", "gate.js"],
            ),
            (
                {
                    "a.js": "import './b.js';",
                    "b.js": 'export { c } from "./c.js";',
                    "c.js": 'const a = await import("./a.js");',
                },
                ["a.js", "b.js", "c.js", "a.js"],
            ),
        ],
    )
    def test_names_the_cycle(self, tmp_path: Path, sources: dict[str, str], cycle: list[str] | None) -> None:
        """Every form of import is read, across lines, and a cycle is named module by module."""
        for name, text in sources.items():
            (tmp_path / name).write_text(text)
        assert find_cycle(import_graph(tmp_path)) == cycle

    def test_ignores_imports_in_text(self) -> None:
        """An import written inside a string or comment mid-line is not an import."""
        assert imports_of('const s = "see ./x.js";\n// mentions import from "./y.js" in prose') == set()
