"""The documentation: the MkDocs site builds without a single warning, and every public name has a docstring.

The API reference page is generated from docstrings (mkdocstrings), so a public function or class without
one is a hole in the documentation; the second test lists every such hole.
"""
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinyxception

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built once with `mkdocs build --strict` (the folder of the built pages)."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    folder = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return folder


def test_mkdocs_build_is_strict_clean(site):
    """`mkdocs build --strict` succeeds: no broken link, no missing page in the nav, no docstring it cannot render.

    Strict mode turns every warning into a failure, so a page that links to a renamed file or an API entry for
    a module that no longer exists fails here rather than silently on the published site.
    """
    assert (site / "api" / "index.html").is_file(), "the API reference page was not generated"


def test_no_page_loads_a_script_or_stylesheet_from_the_network(site):
    """Every <script src> and stylesheet <link> of every built page is a file of the site itself, so the docs
    work offline; the pages with formulas load the MathJax served with the site, and code is highlighted
    (Pygments' classes, styled by a local stylesheet)."""
    remote, math_pages = [], 0
    for page in site.rglob("*.html"):
        text = page.read_text()
        for tag, url in re.findall(r'<(script|link)\b[^>]*?(?:src|href)="([^"]*)"', text):
            if re.match(r"(https?:)?//", url):
                remote.append(f"{page.relative_to(site)}: {tag} {url}")
            elif tag == "script":
                target = site / url.lstrip("/") if url.startswith("/") else page.parent / url
                assert target.resolve().is_file(), f"{page}: script {url} is not in the site"
        if 'class="arithmatex"' in text:
            math_pages += 1
            assert "javascripts/mathjax/tex-svg.js" in text, f"{page}: formulas but no local MathJax"
    assert not remote, remote
    assert math_pages >= 2
    assert 'class="highlight"' in (site / "getting-started" / "index.html").read_text()
    assert ".highlight .k" in (site / "css" / "pygments.css").read_text()


def _public_modules():
    """tinyxception and every submodule whose dotted name has no part starting with an underscore, except the
    learner's files in tinyxception/exercises/ (theirs to write as they like, docstrings or not)."""
    modules = [tinyxception]
    for info in pkgutil.walk_packages(tinyxception.__path__, prefix="tinyxception."):
        learners = info.name.startswith("tinyxception.exercises.")
        if not learners and not any(part.startswith("_") for part in info.name.split(".")):
            modules.append(importlib.import_module(info.name))
    return modules


def _own(obj) -> bool:
    """True for objects defined inside the package (not numpy's, not the standard library's)."""
    return (getattr(obj, "__module__", None) or "").startswith("tinyxception")


def _undocumented():
    """Dotted names of public functions, classes, methods and properties of the package without a docstring.

    A class needs its own docstring. A method that overrides a documented method of a base class counts as
    documented (inspect.getdoc follows the class hierarchy, as help() does), so the forward/backward of each
    Function subclass is covered by the docstrings of Function.forward and Function.backward.
    """
    missing, seen = set(), set()
    for module in _public_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)) or not _own(obj):
                continue
            where = f"{obj.__module__}.{obj.__qualname__}"
            if where in seen:
                continue
            seen.add(where)
            if not (obj.__doc__ or "").strip():  # a class's own docstring: __doc__ is not inherited
                missing.add(where)
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        doc = inspect.getdoc(getattr(obj, attr)) if inspect.isfunction(member) else member.__doc__
                        if not doc:
                            missing.add(f"{where}.{attr}")
    return sorted(missing)


def test_every_public_function_and_class_has_a_docstring():
    """Every public function, class, method and property of the package has a docstring.

    Learners meet the package through `help()`, their editor's tooltips and the API reference page, all of
    which show docstrings. Private helpers (leading underscore) and dunder methods are exempt.
    """
    missing = _undocumented()
    assert not missing, f"{len(missing)} public names have no docstring:\n  " + "\n  ".join(missing)
