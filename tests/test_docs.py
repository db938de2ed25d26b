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


#: The line that marks a block as continuing the one before it (it runs in the same interpreter)
CONTINUES = "<!-- continues"


def python_blocks(path: pathlib.Path) -> list[str]:
    return [block for group in program_groups(path) for block in group]


def program_groups(path: pathlib.Path) -> list[list[str]]:
    """The page's ```python blocks, grouped: a block starts a new group unless the line before it marks it
    as continuing the previous one (an HTML comment starting ``<!-- continues``)."""
    groups: list[list[str]] = []
    current: list[str] = []
    inside, previous = False, ""
    for line in path.read_text().splitlines():
        if line.strip() == "```python":
            inside, current = True, []
            continues = previous.strip().startswith(CONTINUES) and groups
        elif line.strip() == "```" and inside:
            inside = False
            block = "\n".join(current)
            groups[-1].append(block) if continues else groups.append([block])
        elif inside:
            current.append(line)
        previous = line
    return groups


def pages_with_python() -> list[str]:
    """README.md and every docs page that holds a ```python block, found rather than listed."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [str(p.relative_to(ROOT)) for p in pages if p.exists() and python_blocks(p)]


def test_every_page_with_code_is_run():
    """The pages the next test runs include the four known to hold examples (so the search cannot find nothing)."""
    if not (ROOT / "docs").exists():
        pytest.skip("not a source checkout")
    assert {"README.md", "docs/index.md", "docs/torch.md", "docs/jax.md"} <= set(pages_with_python())


def _groups() -> list[tuple[str, int]]:
    return [(page, i) for page in pages_with_python() for i in range(len(program_groups(ROOT / page)))]


@pytest.mark.parametrize(("page", "index"), _groups(), ids=[f"{page}-{i + 1}" for page, i in _groups()])
def test_code_examples_run_alone_and_show_they_worked(page, index, tmp_path):
    """Each ```python block (with the blocks marked as continuing it) runs as a reader would run it: alone,
    in a fresh interpreter, in an empty folder; it exits 0 and prints something that shows it worked."""
    code = "\n".join(program_groups(ROOT / page)[index])
    for library in ("torch", "jax", "optax"):  # what the examples use, whatever the page is called
        if re.search(rf"\b{library}\b", code):
            pytest.importorskip(library)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), f"{page}, block group {index + 1}, printed nothing"
