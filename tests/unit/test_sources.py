"""The static import graph: read correctly on a tiny package, acyclic for dualmd, and the stage closures."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dualmd import catalog, sources


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_graph_of_a_tiny_package(tmp_path):
    pkg = _package(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from pkg import b\nimport os\n",
            "b.py": "def f():\n    from pkg.sub import c  # lazy: still an edge\n",
            "sub/__init__.py": "from . import c\n",
            "sub/c.py": "from ..a import x\n",
            "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        },
    )
    graph = sources.import_graph(pkg)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.a"},
        "pkg.d": set(),  # annotation-only imports never run
    }
    assert sources.cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    # importing pkg.b runs pkg.sub.c, its package pkg.sub, and pkg.a through c
    assert sources.closure(graph, "pkg.b") == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"}
    assert sources.closure(graph, "pkg.d") == {"pkg", "pkg.d"}
    with pytest.raises(ValueError, match="not a module"):
        sources.closure(graph, "pkg.missing")


def test_import_module_calls_are_edges(tmp_path):
    """importlib.import_module with a literal name is that module; with a name built on a literal prefix, every
    module under the prefix (any may be the one imported); a name with no literal prefix is not read."""
    pkg = _package(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "plugins/__init__.py": "",
            "plugins/one.py": "",
            "plugins/two.py": "",
            "other.py": "",
            "load.py": "import importlib\ndef load(n):\n    return importlib.import_module(f'pkg.plugins.{n}')\n",
            "fixed.py": "import importlib\nimportlib.import_module('pkg.other')\n",
            "opaque.py": "import importlib\ndef load(n):\n    return importlib.import_module(n)\n",
        },
    )
    graph = sources.import_graph(pkg)
    assert graph["pkg.load"] == {"pkg.plugins.one", "pkg.plugins.two"}
    assert graph["pkg.fixed"] == {"pkg.other"}
    assert graph["pkg.opaque"] == set()
    # without plugins, a name built at run time is no edge; a literal name still is
    without = sources.import_graph(pkg, plugins=False)
    assert without["pkg.load"] == set() and without["pkg.fixed"] == {"pkg.other"}
    assert sources.closure(without, "pkg.load") == {"pkg", "pkg.load"}


def test_dualmd_has_no_import_cycle():
    assert sources.cycles(sources.import_graph()) == []


def test_stage_closures_are_what_each_stage_runs():
    graph = sources.import_graph()

    def closure(stage: str) -> set[str]:
        return sources.closure(graph, f"dualmd.stages.{stage}")

    assert "dualmd.attacks.loss" in closure("attack")
    assert "dualmd.train.loop" in closure("train")
    # stages that only read small files stay free of the models and the attacks
    for light in ("metrics", "report"):
        assert not {m for m in closure(light) if m.startswith(("dualmd.attacks", "dualmd.train"))}, light
    assert "dualmd.attacks.loss" not in closure("sample")
    # importing one attack module runs no other attack (the registry imports them, not their package)
    assert "dualmd.attacks.gsa" not in sources.closure(graph, "dualmd.attacks.loss")
    assert {"dualmd.attacks.gsa", "dualmd.attacks.loss"} <= sources.closure(graph, "dualmd.attacks.run")


def test_package_init_files_hold_only_a_docstring():
    """Code lives in named modules: importing a subpackage runs nothing, and every importer names the module (the
    top-level package also sets `__version__`)."""
    for module, path in sources.module_files().items():
        if path.name == "__init__.py" and module != "dualmd":
            body = ast.parse(path.read_text()).body
            assert len(body) == 1 and isinstance(body[0], ast.Expr), module
            assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str), module


def test_an_attack_job_runs_its_own_attack_module_and_no_other():
    """The code of an attack job (workflow/rules/common.smk: attack_code): the attack stage's closure without
    plugin imports, and its attack's module closure. A wrapping attack runs the attacks it may wrap."""
    graph = sources.import_graph(plugins=False)
    attack_modules = {spec.module_name for spec in catalog.ATTACKS.values()}

    def job(attack: str) -> set[str]:
        return sources.closure(graph, "dualmd.stages.attack") | sources.closure(
            graph, catalog.attack(attack).module_name
        )

    assert not sources.closure(graph, "dualmd.stages.attack") & attack_modules
    assert job("pia") & attack_modules == {"dualmd.attacks.pia"}
    assert job("pian") & attack_modules == {"dualmd.attacks.pia"}
    assert job("secmi_stat") & attack_modules == {"dualmd.attacks.secmi"}
    assert {"dualmd.attacks.pia", "dualmd.attacks.loss"} <= job("teacher_max")


def test_planning_modules_import_no_third_party_numeric_library():
    """The modules the Snakefile imports at parse time are standard library only (plus yaml for config)."""
    graph = sources.import_graph()
    files = sources.module_files()
    planning = {"dualmd", "dualmd.catalog", "dualmd.sources", "dualmd.stage"} | {
        m for m in files if m.startswith("dualmd.config")
    }
    modules = (
        "dualmd.catalog",
        "dualmd.sources",
        "dualmd.stage",
        "dualmd.config.experiment",
        "dualmd.config.stages",
    )
    for module in modules:
        closure = sources.closure(graph, module)
        assert closure <= planning, (module, sorted(closure - planning))
        for name in closure:
            text = files[name].read_text()
            for heavy in ("torch", "numpy", "diffusers", "pandas"):
                assert f"import {heavy}" not in text and f"from {heavy}" not in text, (name, heavy)


def test_the_thread_count_is_set_in_one_place():
    """Only the CLI sets the thread count; no library module and no rule does."""
    root = Path(sources.PACKAGE_DIR)
    setters = sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "set_num_threads" in path.read_text() or "OMP_NUM_THREADS" in path.read_text()
    )
    assert setters == ["cli.py"]
    rules = root.parents[1] / "workflow" / "rules"
    assert not [p.name for p in rules.glob("*.smk") if "OMP_NUM_THREADS" in p.read_text()]
