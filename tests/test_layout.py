"""The package keeps its shape: no import cycles, imports from defining modules, small modules."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "retrain"
MAX_LINES = 200  # about 150 is the aim; past 200 a module holds two concerns


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in PACKAGE.glob("*.py")}


def _imports(path: Path) -> set[str]:
    """retrain modules that `path` imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text("utf-8"))
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skipped = {id(n) for node in guarded for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "retrain":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("retrain."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("retrain.")}
    return found


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


def test_no_import_cycles():
    graph = {name: _imports(path) - {name} for name, path in _modules().items() if name != "__init__"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_package_modules_import_from_defining_modules_not_the_root():
    modules = _modules()
    for name, path in modules.items():
        if name == "__init__":
            continue
        bad = sorted(n for n in _imports(path) if n not in modules)
        assert not bad, f"{path.name} imports {bad} from the package root; import them from their modules"


def test_modules_stay_small():
    sizes = {path.name: len(path.read_text("utf-8").splitlines()) for path in PACKAGE.glob("*.py")}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}; split them by concern"


def test_only_cli_imports_click_and_only_model_imports_keras():
    for name, path in _modules().items():
        text = path.read_text("utf-8")
        if name != "cli":
            assert "import click" not in text, path.name
        if name != "model":
            assert "import tf_keras" not in text and "tensorflow_hub as hub" not in text, path.name


def test_the_command_line_and_the_recipe_import_without_tensorflow():
    """Input errors print before TensorFlow's seconds of start-up: cli, pipeline and inputs must not load it."""
    import subprocess
    import sys

    code = ("import sys; import retrain.cli, retrain.pipeline, retrain.inputs; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
