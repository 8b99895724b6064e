"""The docs point at files that exist inside the repository, and say nothing stale about
what exists (issue 16, item 13)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "notebooks" / "README.md", ROOT / "docs" / "DESIGN.md"]
# a path in backticks: at least one folder, ending in a file type the docs name
PATH = re.compile(r"`(\.{0,2}/?[\w.-]+/[\w./-]*\.(?:md|py|json|toml|onnx))`")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_path_a_doc_names_is_a_file_of_the_repository(doc):
    paths = PATH.findall(doc.read_text())
    assert paths, f"{doc} names no file: is the pattern still right?"
    generated = {"data/mobilenet_v2.onnx"}              # written by make, git-ignored
    for path in paths:
        target = (ROOT / path).resolve() if not path.startswith(".") else (doc.parent / path).resolve()
        if not target.exists():
            target = (doc.parent / path).resolve()
        assert ROOT in target.parents, f"{doc.name} points outside the repository: {path}"
        assert target.exists() or path in generated, f"{doc.name} names a missing file: {path}"


def test_the_readme_points_to_the_design_in_the_repository():
    assert "`docs/DESIGN.md`" in (ROOT / "README.md").read_text()


def test_no_notebook_or_doc_calls_an_existing_feature_planned():
    import workbench

    for path in [*DOCS, *sorted((ROOT / "notebooks").glob("*.py"))]:
        text = path.read_text()
        for name in ("sweep", "tune", "compare", "profile"):
            assert hasattr(workbench, name)
            assert not re.search(rf"{name}`? (is|are) (planned|coming|not yet)", text), (path.name, name)
