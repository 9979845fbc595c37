"""The package keeps its shape: rooms by role in a declared order, no import cycles, one concern a module."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "retrain"
MAX_LINES = 400  # a soft bound: past it a module almost surely holds two concerns; never split one to fit it
FRONT = {"__init__", "__main__", "cli", "options", "pipeline"}  # flags -> Config -> the recipe: may use every room
BASE = {"errors", "stop", "native", "fs", "config", "version"}  # what every room may use
# Rooms in order: a room imports the base, itself and rooms before it, never one after it (images/ never
# reaches into training/; reports/ writes plain values and so needs none of the TensorFlow rooms).
ROOMS = ("inputs", "images", "backbone", "features", "reports", "training", "export", "beam", "serve")


def _modules() -> dict[str, Path]:
    """Dotted name below retrain ("inputs.scan", "cli") -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def _room(name: str) -> str:
    return name.split(".")[0]


def _imports(path: Path) -> set[str]:
    """Dotted names below retrain that `path` imports anywhere (functions included), except under
    `if TYPE_CHECKING:`. `from retrain.x import y` counts as x.y when x.y is a module, else as x."""
    modules = _modules()
    tree = ast.parse(path.read_text("utf-8"))
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skipped = {id(n) for node in guarded for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "retrain" and not node.module.startswith("retrain."):
                continue
            base = node.module[len("retrain."):] if node.module != "retrain" else ""
            for alias in node.names:
                inner = f"{base}.{alias.name}".lstrip(".")
                found.add(inner if inner in modules else base)
        elif isinstance(node, ast.Import):
            found |= {a.name[len("retrain."):] for a in node.names if a.name.startswith("retrain.")}
    return found - {""}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _allowed(importer: str, imported: str) -> bool:
    """May module `importer` import module `imported` under the declared order?"""
    source, target = _room(importer), _room(imported)
    if source in FRONT or source == target or target in BASE:
        return target not in FRONT or source in {"__init__", "__main__", "cli"}
    if source in BASE or target in FRONT:
        return False
    return ROOMS.index(target) < ROOMS.index(source)


def test_every_module_lives_in_a_room_or_is_front_or_base():
    top = {name for name in _modules() if "." not in name}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top <= FRONT | BASE, f"modules at the top that belong in a room: {sorted(top - FRONT - BASE)}"
    assert len(top) <= 12
    assert folders == set(ROOMS), f"folders {sorted(folders)}, declared rooms {ROOMS}"
    assert all(len(name.split(".")) <= 2 for name in _modules()), "one level of rooms"


def test_each_room_says_what_it_holds_and_imports_nothing():
    for room in ROOMS:
        init = PACKAGE / room / "__init__.py"
        tree = ast.parse(init.read_text("utf-8"))
        doc = ast.get_docstring(tree)
        assert doc and len(doc) > 40, f"{room}/__init__.py: expected a docstring saying what the room holds"
        assert len(tree.body) == 1, f"{room}/__init__.py holds code besides its docstring: start-up must stay light"


def test_no_import_cycles():
    graph = {name: _imports(path) - {name} for name, path in _modules().items() if name != "__init__"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_rooms_import_only_the_base_and_earlier_rooms():
    wrong = [f"{name} imports {other}" for name, path in _modules().items() for other in sorted(_imports(path))
             if not _allowed(name, other)]
    assert not wrong, f"imports against the order {ROOMS} (base {sorted(BASE)}): {wrong}"


def test_the_order_check_refuses_what_it_should():
    assert not _allowed("images.preprocess", "training.trainer")
    assert not _allowed("inputs.scan", "pipeline")
    assert not _allowed("errors", "inputs.scan")
    assert _allowed("training.trainer", "images.preprocess") and _allowed("pipeline", "beam.launch")


def test_package_modules_import_modules_not_room_or_package_names():
    modules = _modules()
    for name, path in modules.items():
        if name == "__init__":
            continue
        bad = sorted(n for n in _imports(path) if n not in modules or n in ROOMS)
        assert not bad, f"{path.name} imports names {bad} from a package's __init__; import them from their modules"


def test_modules_hold_one_concern():
    sizes = {name: len(path.read_text("utf-8").splitlines()) for name, path in _modules().items()}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}; is each one concern?"


def test_only_cli_imports_click_and_only_keras_models_imports_keras():
    for name, path in _modules().items():
        text = path.read_text("utf-8")
        if name != "cli":
            assert "import click" not in text, path.name
        if name != "backbone.keras_models":
            assert "import tf_keras" not in text and "tensorflow_hub as hub" not in text, path.name


def test_the_command_line_and_the_recipe_import_without_tensorflow():
    """Input errors print before TensorFlow's seconds of start-up: cli, pipeline and inputs must not load it."""
    code = ("import sys; import retrain.cli, retrain.pipeline, retrain.inputs.gather; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
