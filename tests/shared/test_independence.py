"""The monorepo's rules: papers never import each other; shared/ never imports a paper."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_papers_do_not_import_each_other():
    offenders = []
    for package in sorted(p for p in (ROOT / "methods").iterdir() if (p / "__init__.py").exists()):
        for path in package.rglob("*.py"):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "methods" and len(parts) > 1 and parts[1] != package.name:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_shared_imports_no_paper():
    offenders = []
    for path in (ROOT / "shared").rglob("*.py"):
        for name in imported_modules(path):
            if name.startswith("methods."):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_every_paper_has_readme_tests_and_card():
    from shared.registry import load_package

    for package in sorted(p for p in (ROOT / "methods").iterdir() if (p / "__init__.py").exists()):
        assert (package / "README.md").exists(), package.name
        assert (ROOT / "tests" / "methods" / package.name).is_dir(), package.name
        card, presets = load_package(package.name)
        assert card.package == package.name
        assert {"smoke", "cpu", "paper"} <= set(presets), package.name
