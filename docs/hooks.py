"""MkDocs hook: tfxai's docstrings cross-reference in Sphinx roles (:class:`Classifier`); mkdocstrings
renders Markdown, so the role name would show before the code. Drop it, keep the code."""
from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):(?=<code>)")


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub("", html)
