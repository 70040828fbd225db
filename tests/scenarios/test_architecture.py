"""The import graph of src/wormwatch: no cycle, stages in data-flow order, rooms kept.

Every ``import`` counts, wherever it is written: at the top, inside a function
(the CLI's lazy imports) or under ``TYPE_CHECKING`` (a circle of type-only
imports is still two modules that cannot be read apart). ARCHITECTURE.md
draws the same rooms and rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from testkit.paths import REPO

SRC = REPO / "src" / "wormwatch"

# Rooms in data-flow order: a module may import its own room and the rooms
# before it, never one after it. The first matching prefix wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # plain types, text, CIDRs, records, the config (with the [cluster] table),
    # the numba kernels, which import only model constants and each other, the
    # garbage collector's start-up hold and the operator's signals to a run
    ("shared", ("model", "errors", "text", "nets", "records", "tomltable", "config",
                "cluster.settings", "delta", "kernels", "collector", "control")),
    ("source", ("source", "cluster.broker", "cluster.tlscheck", "cluster.view")),
    ("decode", ("decode", "reassemble", "dnstcp")),
    ("classify", ("classify", "dganame")),
    ("aggregate", ("aggregate", "answers", "tables")),
    ("detect", ("signals", "dganx", "periods", "sync", "botsync", "detect", "alerts", "judge")),
    ("loop", ("feed", "health", "finder", "pipeline", "warmup", "firstrun")),
    ("present", ("present",)),
    ("cluster", ("cluster",)),
    ("edge", ("outputs", "runner", "cli", "__main__")),
)  # fmt: skip
# Third-party packages that stay in one room (ruff's TID251 bans them elsewhere
# too; this also catches imports ruff is told to ignore).
ROOMS_OF_PACKAGES = {
    "numba": "kernels",
    "pcapy": "source",
    "rich": "present",
    "matplotlib": "present.report",
}
# The rooms of present/ import the shared present.safe, never each other, except
# that the report writes its hosts.jsonl through the summary sink.
PRESENT_ROOMS = ("present.live", "present.report", "present.sinks")
PRESENT_ALLOWED = {("present.report", "present.sinks")}


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package, by its name relative to ``wormwatch``."""
    return {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute dotted names an import statement brings in."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            anchor = ["wormwatch", *package][: len(package) + 2 - node.level]
            base = ".".join([*anchor, *([base] if base else [])])
        yield base
        yield from (f"{base}.{a.name}" for a in node.names)


@cache
def imports() -> dict[str, frozenset[str]]:
    """Module -> the modules of the package and the top-level packages it imports."""
    known = modules()
    graph: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        found: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            for dotted in _imported(node, name, path.name == "__init__.py"):
                if dotted == "wormwatch" or not dotted.startswith("wormwatch."):
                    found.add(dotted.split(".")[0])
                    continue
                inner = dotted.removeprefix("wormwatch.")
                # "from wormwatch.present.live import fmt" names a module; a
                # name that is not a module is a function or class of its parent
                if inner in known:
                    found.add(inner)
        found.discard(name)
        graph[name] = frozenset(found)
    return graph


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def stage_of(name: str) -> int:
    """The rank of ``name``'s room in STAGES; a new module must be placed there
    (and in ARCHITECTURE.md's table of rooms)."""
    if name == "":
        # the package itself: its __init__ holds only the version
        return len(STAGES) - 1
    for rank, (_, prefixes) in enumerate(STAGES):
        if any(_within(name, p) for p in prefixes):
            return rank
    raise AssertionError(f"{name} is in no stage of STAGES")


def test_the_walk_sees_the_package() -> None:
    graph = imports()
    # spot checks that the walk reads every kind of import: top-level, relative
    # to nothing, function-local (the CLI's) and type-only
    assert "pipeline" in graph["runner"]
    assert "runner" in graph["cli"]  # imported inside main()
    assert "numba" in graph["kernels.decode"]
    assert "rich" in graph["present.live.table"]
    assert "present.report.data" in graph["present.report.page"]  # under TYPE_CHECKING
    assert len(graph) > 60


def test_no_import_cycle() -> None:
    assert _cycles(imports()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_stages_import_only_earlier_stages() -> None:
    upward = [
        f"{name} ({STAGES[stage_of(name)][0]}) imports {dep} ({STAGES[stage_of(dep)][0]})"
        for name, deps in sorted(imports().items())
        for dep in sorted(deps)
        if dep in modules() and stage_of(dep) > stage_of(name)
    ]
    assert upward == []


@pytest.mark.parametrize("package", sorted(ROOMS_OF_PACKAGES))
def test_third_party_packages_stay_in_their_room(package: str) -> None:
    room = ROOMS_OF_PACKAGES[package]
    outside = sorted(
        name for name, deps in imports().items() if package in deps and not _within(name, room)
    )
    assert outside == []
    assert any(package in deps for deps in imports().values()), f"nothing imports {package}"


def test_present_rooms_stay_apart() -> None:
    crossings = [
        f"{name} imports {dep}"
        for name, deps in sorted(imports().items())
        for dep in sorted(deps)
        for a in PRESENT_ROOMS
        for b in PRESENT_ROOMS
        if a != b and _within(name, a) and _within(dep, b) and (a, b) not in PRESENT_ALLOWED
    ]
    assert crossings == []


def test_every_module_has_a_room() -> None:
    for name in modules():
        stage_of(name)
