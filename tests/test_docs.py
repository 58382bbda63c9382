"""The reference in docs/ builds in strict mode (a broken link or a missing page fails it), its API page
shows the docstrings, and neither it nor the README carries a path of the machine it was written on."""
from __future__ import annotations

import ast
import html
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, timeout=300, cwd=REPO)


def _nav_pages(nav) -> list[str]:
    """The Markdown files named in mkdocs.yml's nav, nested sections included."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def _html_of(site: Path, page: str) -> Path:
    """Where MkDocs writes ``page`` (directory URLs: a/b.md -> a/b/index.html, a/index.md -> a/index.html)."""
    stem = page[:-len(".md")]
    return site / (f"{stem}.html" if stem == "index" or stem.endswith("/index") else f"{stem}/index.html")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _page_words(path: Path) -> str:
    text = html.unescape(re.sub(r"<[^>]+>", " ", path.read_text()))
    return " ".join(_words(text))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _mkdocs_build(CONFIG, out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_strict_build_writes_every_page_of_the_nav(site):
    pages = _nav_pages(yaml.safe_load(CONFIG.read_text())["nav"])
    assert len(pages) >= 15 and "api.md" in pages
    missing = [p for p in pages if not _html_of(site, p).is_file()]
    assert not missing, f"pages of the nav not built: {missing}"
    # every Markdown file under docs/ is in the nav (strict mode refuses one that is not; checked here too)
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk == set(pages)


def _docstring_first_line(target: str) -> str | None:
    """The first docstring line of ``pkg.module.Name`` read from the source (no import: no TensorFlow)."""
    module, _, name = target.rpartition(".")
    base = REPO.joinpath(*module.split("."))
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            doc = ast.get_docstring(node)
            return re.sub(r":\w+:(?=`)", "", doc.splitlines()[0]) if doc else None  # the page drops :class:
    raise AssertionError(f"docs/api.md names {target}, which {path} does not define")


def test_api_page_shows_each_documented_names_docstring(site):
    targets = re.findall(r"^::: (\S+)", (DOCS / "api.md").read_text(), re.M)
    assert {"tfxai.training.loop.train", "tfxai.classifier.load_classifier",
            "tfxai.explain.factory.make_explainer"} <= set(targets)
    page = _page_words(_html_of(site, "api.md"))
    for target in targets:
        first = _docstring_first_line(target)
        if first:
            assert " ".join(_words(first)) in page, f"{target}'s docstring ({first!r}) is not on the API page"
    raw = _html_of(site, "api.md").read_text()
    assert ":class:" not in raw and ":func:" not in raw  # docs/hooks.py drops the Sphinx role names


def test_site_loads_nothing_from_another_host(site):
    """Read offline: no script, style sheet or font from a CDN (MkDocs' highlight.js is switched off)."""
    for page in site.rglob("*.html"):
        remote = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(?:https?:)?//[^\"]+\"", page.read_text())
        assert not remote, f"{page.relative_to(site)} loads {remote}"


def test_strict_build_fails_on_a_broken_link_a_missing_anchor_and_a_missing_page(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    with open(docs / "index.md", "a") as f:
        f.write("\n[gone](no-such-page.md) and [nowhere](layout.md#no-such-heading)\n")
    (docs / "development.md").unlink()
    config = yaml.safe_load(CONFIG.read_text())
    config.update(docs_dir=str(docs), hooks=[str(docs / "hooks.py")])
    mkdocstrings = next(p["mkdocstrings"] for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    mkdocstrings["handlers"]["python"]["paths"] = [str(REPO)]  # the copy's config sits elsewhere
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    done = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    for culprit in ("no-such-page.md", "#no-such-heading", "development.md"):
        assert culprit in done.stderr, f"the failed build does not name {culprit}:\n{done.stderr[-3000:]}"


def _machine_paths() -> list[str]:
    """Paths of the machine the docs are written on: none may appear in what a user reads."""
    paths = ["/work/", "/tmp/", "../shared"]
    for place in (Path(tempfile.gettempdir()), Path.home(), REPO.parent):
        if len(place.parts) > 1:  # not the root folder, which every absolute path starts with
            paths.append(f"{place}/")
    return paths


def test_readme_and_docs_carry_no_path_of_the_development_machine():
    files = [REPO / "README.md", CONFIG, *sorted(p for p in DOCS.rglob("*") if p.is_file() and "__pycache__" not in p.parts)]
    found = [f"{f.relative_to(REPO)}:{n}: {line.strip()}" for f in files
             for n, line in enumerate(f.read_text().splitlines(), 1)
             for path in _machine_paths() if path in line]
    assert not found, "\n".join(found)


def _github_slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_reach_existing_files_and_headings():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        path = REPO / target if target else REPO / "README.md"
        assert path.exists(), f"README links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S), re.M)
            assert anchor in {_github_slug(h) for h in headings}, f"README links to {link}: no such heading"
