"""Text from outside (application names, query text, log lines, alert labels, exception messages) made fit for
each kind of output, so that it never becomes markup there: HTML, Markdown (as nbconvert, JupyterLab or GitHub
render it), math (MathJax typesets `$...$` and `\\(...\\)` in a page) or a terminal's control sequences.

- `plain`: for a terminal or a text file: control and invisible formatting characters (escape sequences,
  carriage returns, bidirectional overrides) shown as Python escapes (`\\x1b`, `\\r`, `\\u202e`).
- `line`: `plain` on one line: line breaks shown as `\\n` too.
- `markdown`: one line of Markdown that renders as exactly the text: what could start markup backslash-escaped.
- `code`: an inline code span no backtick in the text can close.
- `code_block`: a fenced Markdown block whose fence is longer than any run of backticks in the text.
- `html` / `html_block`: HTML-escaped text; the block is a `<pre>` that math typesetting leaves alone. Put
  any HTML holding outside text in an element of class NO_MATH.
"""

from __future__ import annotations

import html as _html
import re

NO_MATH = "tex2jax_ignore"  # the class MathJax 2 and 3 leave untypeset
# C0 and C1 controls (tab and newline kept), invisible format characters (zero-width, bidirectional
# embeddings, overrides and isolates, word joiners, BOM, interlinear annotations, tags) and the Unicode line
# and paragraph separators.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f]"
)
# What can start Markdown (or math, or HTML) in the middle of a line; `://` is a bare link to the link plugin of
# nbconvert's renderer; at the start of a line any punctuation may open a block (list, heading, quote, table).
_MARKUP = re.compile(r"[\\`*_\[\]<>&|~$#{}]|:(?=//)|^[!-/:-@\[-`{-~]")
_LIST_NUMBER = re.compile(r"^([0-9]{1,9})([.)])")
_BACKTICKS = re.compile(r"`+")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b", "\x0b": "\\v", "\x0c": "\\f"}


def plain(text: object) -> str:
    """`text` with every control or invisible formatting character but tab and newline shown as an escape."""
    return _INVISIBLE.sub(_escape_character, str(text))


def line(text: object) -> str:
    """`plain`, with newlines and tabs shown as escapes too: the text stays on one line."""
    return plain(text).replace("\n", "\\n").replace("\t", "\\t")


def markdown(text: object) -> str:
    """One line of Markdown rendering as `text` itself: no emphasis, link, image, HTML, code span or math."""
    return _LIST_NUMBER.sub(r"\1\\\2", _MARKUP.sub(r"\\\g<0>", line(text).strip()))


def code(text: object) -> str:
    """An inline code span showing `text` on one line; it stays in its cell of a table (a `|` shows as `\\|`)."""
    body = line(text).replace("|", "\\|")
    ticks = "`" * (max((len(run) for run in _BACKTICKS.findall(body)), default=0) + 1)
    pad = " " if body[:1] in ("`", " ") or body[-1:] in ("`", " ") else ""
    return f"{ticks}{pad}{body}{pad}{ticks}"


def code_block(text: object, info: str = "text") -> str:
    """A fenced Markdown code block showing `text`: no line of it can close the fence."""
    body = plain(text)
    longest = max((len(run) for run in _BACKTICKS.findall(body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def html(text: object) -> str:
    """`plain` text as HTML text, quotes included (fit for an attribute's value too)."""
    return _html.escape(plain(text), quote=True)


def html_block(text: object) -> str:
    """A `<pre>` block showing `text`, left alone by math typesetting."""
    return f'<pre class="{NO_MATH}">{html(text)}</pre>'


def _escape_character(match: re.Match) -> str:
    code = ord(match.group())
    if match.group() in _NAMED:
        return _NAMED[match.group()]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
