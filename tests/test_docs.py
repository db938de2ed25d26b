"""The documentation site builds without warnings (mkdocs --strict), and every page's Python examples run."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mathjax")
    if not (ROOT / "mkdocs.yml").exists():
        pytest.skip("not a source checkout")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr
    site = tmp_path / "site"
    assert (site / "api" / "index.html").exists()
    # math renders offline: the MathJax bundle ships with the site and every page loads it
    math_page = (site / "math" / "index.html").read_text()
    assert 'src="../assets/mathjax/tex-svg.js"' in math_page and 'class="arithmatex"' in math_page
    assert (site / "assets" / "mathjax" / "tex-svg.js").stat().st_size > 1_000_000
    assert not (site / "_hooks").exists()
    shutil.rmtree(site)


def python_blocks(path: pathlib.Path) -> list[str]:
    blocks, current, inside = [], [], False
    for line in path.read_text().splitlines():
        if line.strip() == "```python":
            inside, current = True, []
        elif line.strip() == "```" and inside:
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def pages_with_python() -> list[str]:
    """README.md and every docs page that holds a ```python block, found rather than listed."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [str(p.relative_to(ROOT)) for p in pages if p.exists() and python_blocks(p)]


def test_every_page_with_code_is_run():
    """The pages the next test runs include the four known to hold examples (so the search cannot find nothing)."""
    if not (ROOT / "docs").exists():
        pytest.skip("not a source checkout")
    assert {"README.md", "docs/index.md", "docs/torch.md", "docs/jax.md"} <= set(pages_with_python())


@pytest.mark.parametrize("page", pages_with_python())
def test_code_examples_run(page, capsys):
    """Every ```python block of a page runs, in order, in one namespace."""
    path = ROOT / page
    if not path.exists():
        pytest.skip("not a source checkout")
    blocks = python_blocks(path)
    code = "\n".join(blocks)
    for library in ("torch", "jax", "optax"):  # what the examples use, whatever the page is called
        if re.search(rf"\b{library}\b", code):
            pytest.importorskip(library)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, f"{page}:python-block", "exec"), namespace)
