"""The tree is the pipeline (docs/architecture.md): the import contract holds and modules stay small."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[3] / "instructkit"
MAX_LINES = 300
STAGES = ("synth", "train", "eval", "serve", "tools")


def _imports(path: Path) -> set[str]:
    """Every ``instructkit.*`` module a file imports, at any depth (inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("instructkit.")}


def test_stages_never_import_one_another():
    bad = []
    for stage in STAGES:
        for f in (PKG / stage).rglob("*.py"):
            for m in _imports(f):
                other = m.split(".")[1]
                if other in STAGES and other != stage:
                    bad.append(f"{f.relative_to(PKG.parent)} imports {m}")
    assert not bad, "\n".join(bad)


def test_the_import_contract_holds():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    res = subprocess.run([exe], cwd=PKG.parent, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_modules_stay_small_or_say_why():
    """A module over 300 lines says why on one of its first lines (``# size: ...``)."""
    big = []
    for f in PKG.rglob("*.py"):
        lines = f.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith("# size:") for line in lines[:5]):
            big.append(f"{f.relative_to(PKG.parent)}: {len(lines)} lines")
    assert not big, "split these along their responsibilities, or give a one-line '# size:' reason:\n" + "\n".join(big)


def test_every_package_folder_is_a_package():
    """A folder of modules without __init__.py is left out of the wheel by setuptools' package finder."""
    missing = [str(d.relative_to(PKG.parent)) for d in PKG.rglob("*") if d.is_dir() and any(d.glob("*.py"))
               and not (d / "__init__.py").is_file()]
    assert not missing, missing


def test_no_two_modules_import_each_other():
    """Inside a package too: a pair of modules that import each other (even inside functions) is a cycle
    the package layers cannot see; what both need moves into a third module."""
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("instructkit")
    pairs = sorted((a, b) for a in g.modules for b in g.find_modules_directly_imported_by(a)
                   if a < b and a in g.find_modules_directly_imported_by(b))
    assert not pairs, pairs
