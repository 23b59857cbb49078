"""MkDocs hook: Sphinx roles in preflight's docstrings (:func:`x`, :class:`x`, ...) rendered as plain code.

The docstrings are numpy style, written for both ``help()`` and this site; mkdocstrings renders a role's target as
code already and would leave the role's name (":func:") in front of it.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub("", html)
