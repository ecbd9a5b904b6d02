"""The method table (gsbsim/format/methods.py) drives every engine: each row is run by each of them,
a row whose feature an engine lacks fails, and a new row made of existing features works everywhere
without touching an engine (docs/adding_a_method.md). Also: no import circle anywhere in the code."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from gsbsim.engine import fast, golden
from gsbsim.engine.trace import trace_names
from gsbsim.format import methods as table
from gsbsim.format.model_file import expected_arrays
from gsbsim.format.random_model import random_images, random_model
from gsbsim.hw import costs
from tests.support.engines import assert_same
from tests.support.methods import register_tokact

ROOT = Path(__file__).resolve().parents[1]
ROWS = sorted(table.METHODS)


@pytest.fixture
def throwaway(monkeypatch):
    """A new method built from existing features, registered only for the test: one table row."""
    return register_tokact(monkeypatch)


@pytest.mark.parametrize("method", ROWS)
def test_every_row_has_an_implementation_of_each_feature_in_every_engine(method):
    f = table.METHODS[method]
    assert f.post_linear in golden.POST_LINEAR and f.post_linear in fast.POST_LINEAR
    assert f.attention in golden.ATTENTION and f.attention in fast.ATTENTION
    from reference.method_parts import PARTS
    import reference.methods  # noqa: F401  (registers the rows)
    assert method in PARTS, f"reference/methods.py registers no modules for {method}"


@pytest.mark.parametrize("method", ROWS)
def test_every_row_runs_golden_equal_fast_with_the_table_traces(method):
    m = random_model(np.random.default_rng(11), method=method, img_size=6, patch_size=2, embed_dim=16,
                     num_heads=2, mlp_hidden=24, depth=2)
    x = random_images(np.random.default_rng(12), m, 3)
    _, g = golden.forward(m, x, trace=True)
    assert list(g) == trace_names(m.depth, method)
    assert_same(m, x)
    report = costs.count(m.header)
    assert report.bops > 0 and {p.name for p in report.params} == set(expected_arrays(m.header)) - {"format_version"}


def test_an_engine_without_a_feature_fails_loudly(monkeypatch):
    """A row whose feature an engine has no implementation for is an error, never a silent fallback."""
    m = random_model(np.random.default_rng(1), method="reactnet", img_size=4, patch_size=2, embed_dim=8,
                     num_heads=2, mlp_hidden=16, depth=1)
    x = random_images(np.random.default_rng(2), m, 1)
    monkeypatch.delitem(golden.POST_LINEAR, "act_unit")
    with pytest.raises(KeyError, match="act_unit"):
        golden.forward(m, x)
    monkeypatch.delitem(fast.ATTENTION, "gsb")
    with pytest.raises(KeyError, match="gsb"):
        fast.forward(m, x)


def test_a_new_row_of_existing_features_runs_in_golden_fast_and_costs(throwaway):
    m = random_model(np.random.default_rng(5), method="tokact", img_size=6, patch_size=2, embed_dim=16,
                     num_heads=2, mlp_hidden=24, depth=2)
    assert np.any(m.arrays["blocks.0.qkv.tok_in"]), "token terms drawn for the new row"
    assert m.features is throwaway
    x = random_images(np.random.default_rng(6), m, 2)
    assert_same(m, x)
    assert costs.count(m.header).bops == costs.count({**m.header, "method": "reactnet"}).bops


def test_a_row_registered_at_run_time_is_a_valid_name_everywhere_without_patching(monkeypatch):
    """The modules that imported the method names before the row existed read them from the table."""
    import gsbsim.format.model_file as mf
    import reference.config as config
    import reference.export as export
    from reference.train.cli import build_parser
    names = (mf.METHODS, costs.METHOD_NAMES, export.EXPORTABLE_METHODS, config.METHODS, table.ACT_METHODS)
    assert not any("tokact" in n for n in names)
    register_tokact(monkeypatch)   # one dictionary entry, no module global patched
    assert all("tokact" in n for n in names) and config.METHODS[-1] == "fp"
    assert build_parser().parse_args(["--method", "tokact"]).method == "tokact"
    m = random_model(np.random.default_rng(5), method="tokact")
    mf.validate(m.header, m.arrays, "<test>")   # raises on an unknown method
    assert costs.count(m.header).bops > 0
    monkeypatch.undo()
    assert not any("tokact" in n for n in names)


def test_the_table_derives_layouts_and_traces_from_features():
    assert table.block_array_names("bit") == table.block_array_names("gsb") == table.block_array_names("sign")
    react, didb = set(table.block_array_names("reactnet")), set(table.block_array_names("didb"))
    assert {"qkv.z"} <= set(table.block_trace_names("reactnet")) and "qkv.z" not in table.block_trace_names("gsb")
    assert {"q.thr", "k.thr", "exp_lut"} <= react and not {"q.thr", "k.thr", "exp_lut"} & didb
    assert table.ACT_METHODS == ("reactnet", "didb")
    with pytest.raises(ValueError, match="hfsc_diba attention reads"):
        table.Method("bad", "requant", "hfsc_diba", 1, 1, False, "", "")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        table.method_of("nope")


def test_a_header_without_method_is_an_error_not_gsb():
    h = costs.header_for_shape(img_size=4, patch_size=2, in_chans=1, embed_dim=8, depth=1, num_heads=2,
                               mlp_hidden=16, num_classes=3, groups=1)
    del h["method"]
    with pytest.raises(costs.CostModelError, match="no 'method'"):
        costs.count(h)


def _imports(path: Path, package: str, root: Path = ROOT) -> set[str]:
    """Modules of this repository that `path` imports (absolute and relative, at any depth)."""
    mod = ".".join(path.relative_to(root).with_suffix("").parts)
    if path.name == "__init__.py":
        mod = mod.rsplit(".", 1)[0]
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[:len(base) - node.level + 1]
                name = ".".join(stem + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return {n for n in out if n.split(".")[0] == package}


def import_cycle(root: Path, packages: tuple[str, ...]) -> list[str] | None:
    """A cycle of the import graph of `packages` under `root` (module level and lazy imports alike), or None."""
    graph: dict[str, set[str]] = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            mod = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            graph[mod] = _imports(path, package, root)
    for mod in graph:   # edges to real modules only (not imported names), and not up to one's own package
        graph[mod] = {t for t in graph[mod] if t in graph and not mod.startswith(t + ".")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for mod in sorted(graph):
        if mod not in state:
            found = visit(mod, [mod])
            if found:
                return found
    return None


def test_no_import_circle_in_gsbsim_or_reference():
    cycle = import_cycle(ROOT, ("gsbsim", "reference"))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_check_catches_a_planted_lazy_circle(tmp_path):
    pkg = tmp_path / "gsbsim"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "a.py").write_text("from gsbsim.engine import b\n")
    (pkg / "engine" / "b.py").write_text("def f():\n    from .a import x\n")
    assert import_cycle(tmp_path, ("gsbsim",)) == ["gsbsim.engine.a", "gsbsim.engine.b", "gsbsim.engine.a"]
    (pkg / "engine" / "b.py").write_text("def f():\n    return 1\n")
    assert import_cycle(tmp_path, ("gsbsim",)) is None


# the table and the registrations: the only files where a method's name may decide anything
NAME_HOMES = {"gsbsim/format/methods.py", "reference/methods.py", "reference/config.py"}


def _method_expr(node: ast.AST) -> bool:
    """An expression that holds a method name: a variable or attribute whose name says so."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "method" in name.lower()


def method_name_decisions(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Places outside NAME_HOMES where a method name is spelled as code: a comparison of a method
    variable with a name, a `method=` parameter or `--method` option defaulting to a literal name."""
    names = set(table.METHODS) | {"fp"}
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in NAME_HOMES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                literals: list[ast.AST] = []
                if isinstance(node, ast.Compare) and any(_method_expr(e) for e in [node.left, *node.comparators]):
                    literals = [c for e in [node.left, *node.comparators]
                                for c in (e.elts if isinstance(e, (ast.Tuple, ast.List, ast.Set)) else [e])]
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = node.args
                    pos = a.posonlyargs + a.args
                    pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
                    literals = [d for arg, d in pairs if d is not None and "method" in arg.arg]
                elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                      and node.args[0].value == "--method"):
                    literals = [k.value for k in node.keywords if k.arg == "default"]
                found += [f"{rel}:{c.lineno}: {c.value!r}" for c in literals
                          if isinstance(c, ast.Constant) and c.value in names]
    return found


def test_method_names_decide_nothing_outside_the_table_and_the_registrations():
    found = method_name_decisions(ROOT, ("gsbsim", "reference", "benchmarks"))
    assert not found, "method names spelled in code (ask the table: is_grouped, is_float_method, features):\n" + \
        "\n".join(found)


@pytest.mark.parametrize("planted", ['if cfg.method != "gsb":\n    pass\n',
                                     'ok = method in ("reactnet", "didb")\n',
                                     'def f(x, method="bit"):\n    return x\n',
                                     'ap.add_argument("--method", default="fp")\n'])
def test_the_method_name_check_catches_a_planted_comparison(tmp_path, planted):
    (tmp_path / "gsbsim").mkdir()
    (tmp_path / "gsbsim" / "clean.py").write_text('if m.attention == "gsb":\n    pass\n')
    assert method_name_decisions(tmp_path, ("gsbsim",)) == []
    (tmp_path / "gsbsim" / "planted.py").write_text(planted)
    found = method_name_decisions(tmp_path, ("gsbsim",))
    assert found and all(f.startswith("gsbsim/planted.py:1: ") for f in found)
