r"""Text the page shows that comes from outside its code: file names, folder names, messages.

Streamlit renders ``st.error``, ``st.info``, ``st.markdown`` and progress texts as Markdown,
so a file name like ``my_scan_1.png`` would lose its underscores and ``[x](http://…)``
would become a link. :func:`escape_markdown` makes any text literal; :func:`code_span` shows
a name or folder verbatim in a code span; :func:`shown_name` shortens a name for one line.

Example:
    >>> print(escape_markdown("my_scan_1.png"))
    my\_scan\_1\.png
    >>> print(code_span("a`b"))
    `` a`b ``
"""

from __future__ import annotations

import re
import string
import unicodedata

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_BACKTICKS = re.compile("`+")
#: Unicode categories never shown as such: controls (NUL, newline), format characters
#: (right-to-left overrides that disguise a name) and lone surrogates (not text)
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(text.split())


def escape_markdown(text: str) -> str:
    """``text`` on one line with every ASCII punctuation character backslash-escaped, so
    Markdown shows it literally (no emphasis, links, HTML, LaTeX or colour directives)."""
    return _PUNCTUATION.sub(r"\\\1", one_line(text))


def code_span(text: str) -> str:
    """``text`` on one line as a Markdown code span (verbatim), whatever backticks it holds."""
    text = one_line(text)
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def shown_name(name: str, limit: int = 60) -> str:
    """A file name as messages show it: control, format and surrogate characters as ``?``,
    at most ``limit`` characters (the middle cut out, so the start and the extension stay)."""
    clean = "".join("?" if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in name)
    if len(clean) <= limit:
        return clean
    keep = limit - 1
    return f"{clean[: keep - keep // 3]}…{clean[len(clean) - keep // 3 :]}"
