"""The catalog page: one self-contained HTML file (inline CSS and JavaScript, no network
access) holding the catalog document (:mod:`featurestore.catalog.document`) and rendering
it in the browser: a searchable feature list, each feature's details and lineage, the
feature services.

Nothing from the manifest ever becomes markup: the document is embedded as JSON in a
``<script type="application/json">`` element with ``<``, ``>`` and ``&`` written as
``\\u003c``, ``\\u003e`` and ``\\u0026`` (so no text can close the element), and the
script builds the page with DOM text nodes only (never ``innerHTML``). A Content Security
Policy allows only the page's own script (by its SHA-256), no network request, no other
script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["render_page", "write_catalog"]

#: ``{{NAME}}`` in the template
_PLACEHOLDER = re.compile(r"\{\{([A-Z]+)\}\}")


def render_page(document: Mapping[str, Any]) -> str:
    """The page's HTML with ``document`` embedded."""
    script = _resource("page.js")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    parts = {
        "CSP": (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
        ),
        "STYLE": _resource("page.css"),
        "DATA": embedded_json(document),
        "SCRIPT": script,
    }
    # one pass: text substituted in is never scanned for placeholders again
    return _PLACEHOLDER.sub(lambda m: parts[m.group(1)], _resource("page.html"))


def embedded_json(document: Mapping[str, Any]) -> str:
    """``document`` as JSON that can sit inside a ``<script>`` element: ASCII, and no
    ``<``, ``>`` or ``&`` (escaped as ``\\u003c`` etc. inside strings, where alone they can
    occur), so neither ``</script>`` nor ``<!--`` can appear."""
    text = json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_catalog(document: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write ``index.html`` (the page) and ``catalog.json`` (the document) into ``out_dir``
    (created if missing; the two files are replaced); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    data = out_dir / "catalog.json"
    for path, text in (
        (page, render_page(document)),
        (data, json.dumps(document, indent=2, allow_nan=False) + "\n"),
    ):
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)  # a reader never sees half a file
    return [page, data]


def _resource(name: str) -> str:
    return (files("featurestore.catalog") / name).read_text(encoding="utf-8")
