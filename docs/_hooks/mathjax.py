"""MkDocs hook: serve MathJax from the pip-installed ``django-static-mathjax`` package, not a CDN.

The formulas of the docs are written for ``pymdownx.arithmatex`` (generic
mode); ``docs/javascripts/mathjax.js`` configures MathJax 3, and this hook adds
its self-contained SVG bundle (``tex-svg.js``, fonts included) to every page
and copies it into the built site, so the site renders math offline and the
build needs no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

BUNDLE = "assets/mathjax/tex-svg.js"


def _source() -> Path:
    try:
        import mathjax  # the static files of django-static-mathjax
    except ImportError as err:
        raise SystemExit('the docs need MathJax: pip install -e ".[docs]" (django-static-mathjax)') from err
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg.js"


def on_config(config):
    if BUNDLE not in [str(script) for script in config.extra_javascript]:
        config.extra_javascript.append(BUNDLE)
    return config


def on_post_build(config):
    target = Path(config.site_dir) / BUNDLE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_source(), target)
