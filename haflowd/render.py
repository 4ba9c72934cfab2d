"""Artifacts turned into HTML that the web UI may insert as-is.

Artifacts are written by agents and are untrusted. Markdown is rendered by
markdown-it-py with raw HTML disabled, so tags in the source come out as
text; link targets go through a stricter check than the library's own
(no ``data:`` at all), and images become plain links so that opening an
artifact never makes the browser fetch anything from another origin.
Everything that is not Markdown is escaped into a ``<pre>``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
JSON_SUFFIXES = frozenset({".json"})

# Entities and percent escapes are decoded and control characters and
# whitespace dropped before the scheme check, stricter than browsers are
# ("java\tscript:" is "javascript:" to a browser).
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f]+")
_UNSAFE_SCHEMES = ("javascript:", "vbscript:", "data:", "file:")


def is_safe_link(url: str) -> bool:
    """Tell whether ``url`` may become an ``href`` in rendered output."""
    probe = _IGNORED_IN_SCHEME.sub("", unquote(html.unescape(url))).lower()
    return not probe.startswith(_UNSAFE_SCHEMES)


def _link_open(
    self: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    token = tokens[idx]
    token.attrSet("rel", "noopener noreferrer nofollow")
    token.attrSet("target", "_blank")
    return self.renderToken(tokens, idx, options, env)


def _image(
    self: RendererHTML,
    tokens: Sequence[Token],
    idx: int,
    options: OptionsDict,
    env: EnvType,
) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env)
    src = str(token.attrGet("src") or "")
    label = html.escape(f"[image: {alt or src}]")
    if not src or not is_safe_link(src):
        return f'<span class="md-image">{label}</span>'
    href = html.escape(src, quote=True)
    return f'<a class="md-image" href="{href}" rel="noopener noreferrer nofollow" target="_blank">{label}</a>'


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.validateLink = is_safe_link  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image)
    return md


_MARKDOWN = _build_markdown()


def render_markdown(content: str) -> str:
    """Render Markdown source to safe HTML (raw HTML in it stays text)."""
    html_out: str = _MARKDOWN.render(content)
    return html_out


def render_json(content: str) -> str:
    """Pretty-print JSON into an escaped ``<pre>``; invalid JSON stays as is."""
    try:
        text = json.dumps(json.loads(content), indent=2, ensure_ascii=False)
    except ValueError:
        text = content
    return f'<pre class="artifact-json">{html.escape(text)}</pre>'


def render_text(content: str) -> str:
    """Escape anything else into a ``<pre>``."""
    return f'<pre class="artifact-text">{html.escape(content)}</pre>'


def render_artifact(filename: str, content: str) -> str:
    """Return HTML for an artifact, chosen by its file name's suffix.

    The result is safe to assign to ``innerHTML``: it holds no script, no
    event handler attributes and no ``javascript:``/``vbscript:``/``data:``
    links, whatever ``content`` contains.
    """
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return render_markdown(content)
    if suffix in JSON_SUFFIXES:
        return render_json(content)
    return render_text(content)
