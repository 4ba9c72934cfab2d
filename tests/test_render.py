"""Tests for haflowd/render.py: artifacts become HTML that cannot run script."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from haflowd.render import is_safe_link, render_artifact

XSS_MARKDOWN = """# Report

<script>window.pwned = 1</script>

<img src=x onerror="window.pwned = 1">

Inline <b onclick="window.pwned = 1">bold</b> and <iframe src="https://evil.example"></iframe>

[click](javascript:alert(1))
[upper](JAVASCRIPT:alert(1))
[tabbed](java&#09;script:alert(1))
[entity](&#106;avascript:alert(1))
[vb](vbscript:msgbox(1))
[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)
<javascript:alert(1)>

[ref]: javascript:alert(1)

See [ref].

![pixel](data:image/png;base64,iVBORw0KGgo=)
![remote](https://evil.example/track.png)
"""


class _Collector(HTMLParser):
    """Collects every tag, attribute and URL of a piece of HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)


def _parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector


class TestMarkdown:
    @pytest.mark.parametrize("filename", ["a.md", "notes.markdown", "UPPER.MD"])
    def test_markdown_suffixes_render_markdown(self, filename: str) -> None:
        """Files ending in .md or .markdown (any case) are rendered as Markdown."""
        assert render_artifact(filename, "# Title\n\n*em*") == ("<h1>Title</h1>\n<p><em>em</em></p>\n")

    def test_tables_render(self) -> None:
        """GitHub-style pipe tables become HTML tables."""
        html = render_artifact("t.md", "| a | b |\n|---|---|\n| 1 | 2 |\n")
        assert "<table>" in html
        assert "<td>1</td>" in html

    def test_fenced_code_is_escaped(self) -> None:
        """Code blocks keep their text, with markup escaped."""
        html = render_artifact("c.md", "```html\n<script>x()</script>\n```\n")
        assert "&lt;script&gt;x()&lt;/script&gt;" in html
        assert "<script>" not in html

    def test_links_open_in_a_new_tab_without_opener(self) -> None:
        """Safe links stay links, opened in a new tab without window.opener."""
        html = render_artifact("l.md", "[docs](https://example.com/docs)")
        assert html == (
            '<p><a href="https://example.com/docs" rel="noopener noreferrer nofollow" target="_blank">docs</a></p>\n'
        )

    def test_images_become_links(self) -> None:
        """Images are never loaded: they render as a link labelled with the alt text."""
        html = render_artifact("i.md", "![a *chart*](https://example.com/c.png)")
        tags = _parse(html).tags
        assert "img" not in tags
        assert "[image: a chart]" in html
        assert 'href="https://example.com/c.png"' in html


class TestXss:
    def test_raw_html_never_becomes_markup(self) -> None:
        """Script, event handlers and iframes in Markdown come out as text."""
        parsed = _parse(render_artifact("x.md", XSS_MARKDOWN))
        assert not {"script", "img", "iframe", "b"} & set(parsed.tags)
        assert not [name for name, _ in parsed.attrs if name.startswith("on")]

    def test_no_dangerous_urls_survive(self) -> None:
        """No href or src in the output uses javascript:, vbscript: or data:."""
        parsed = _parse(render_artifact("x.md", XSS_MARKDOWN))
        urls = [value for name, value in parsed.attrs if name in {"href", "src"}]
        assert urls == ["https://evil.example/track.png"]

    @pytest.mark.parametrize(
        "url",
        [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "java\tscript:alert(1)",
            "java%09script:alert(1)",
            "&#106;avascript:alert(1)",
            "vbscript:msgbox(1)",
            "data:text/html,<script>alert(1)</script>",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
        ],
    )
    def test_unsafe_links_are_rejected(self, url: str) -> None:
        """Script-capable and local schemes are rejected, however disguised."""
        assert not is_safe_link(url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://example.com",
            "http://x.test/a?b=c",
            "/relative",
            "#anchor",
            "mailto:a@b.c",
        ],
    )
    def test_ordinary_links_are_allowed(self, url: str) -> None:
        """Web, relative, fragment and mail links are allowed."""
        assert is_safe_link(url)


class TestJson:
    def test_json_is_pretty_printed_and_escaped(self) -> None:
        """Valid JSON is indented by two spaces inside an escaped <pre>."""
        html = render_artifact("r.json", '{"a":"<b>","c":[1]}')
        assert html == (
            '<pre class="artifact-json">{\n  &quot;a&quot;: &quot;&lt;b&gt;&quot;,\n'
            "  &quot;c&quot;: [\n    1\n  ]\n}</pre>"
        )

    def test_invalid_json_falls_back_to_escaped_text(self) -> None:
        """Invalid JSON is shown as it is, escaped."""
        html = render_artifact("r.json", "{oops <script>")
        assert html == '<pre class="artifact-json">{oops &lt;script&gt;</pre>'

    def test_non_ascii_is_kept(self) -> None:
        """Non-ASCII text stays readable instead of becoming \\u escapes."""
        assert "café" in render_artifact("r.json", '{"x": "caf\\u00e9"}')


class TestText:
    @pytest.mark.parametrize("filename", ["log.txt", "Makefile", "diff.patch", "a.html"])
    def test_other_files_are_escaped_pre(self, filename: str) -> None:
        """Anything that is not Markdown or JSON is escaped into a <pre>."""
        html = render_artifact(filename, "<script>alert(1)</script>\n& more")
        assert html == ('<pre class="artifact-text">&lt;script&gt;alert(1)&lt;/script&gt;\n&amp; more</pre>')
        assert not re.search(r"<(?!/?pre)", html)
