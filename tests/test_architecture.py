"""The house's shape, checked: one-way layers (import-linter contracts in pyproject.toml) and modules of a size a
newcomer can read. ARCHITECTURE.md explains both."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["yidi", "connectors", "expectations", "tasks", "flows", "demo", "app"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 600
LONG_REASON = "Longer than 600 lines because"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The production packages and the contracts, copied, so a test can add a wrong import without touching ours."""
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    return tree


def test_the_import_contracts_hold_on_this_tree(tree_copy):
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("yidi/_upward.py", "import flows.intake", "Layers: entry points > demo > flows"),
        ("tasks/_upward.py", "import app.cli.main", "Layers: entry points > demo > flows"),
        ("flows/_standin.py", "import demo.standins.kuaidi100", "Production code never imports the demo"),
        ("tasks/review/_peek.py", "import tasks.settlement", "Areas do not import each other's tasks"),
    ],
)
def test_a_wrong_import_fails_naming_the_rule_it_breaks(tree_copy, module, wrong_import, contract):
    path = tree_copy / module
    path.write_text(wrong_import + "\n", encoding="utf-8")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.unlink()
    assert result.returncode == 1
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
    assert module.removesuffix(".py").replace("/", ".") in broken


def test_no_module_in_the_core_tasks_or_connectors_is_over_600_lines_without_a_reason():
    too_long = []
    for package in ("yidi", "tasks", "connectors"):
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) > MAX_LINES and not any(LONG_REASON in line for line in lines[:12]):
                too_long.append(f"{path.relative_to(ROOT)} ({len(lines)} lines)")
    assert not too_long, f"split these, or say at the top '{LONG_REASON} …': {too_long}"
