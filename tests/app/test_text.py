"""Text from outside the code, as the page shows it: escaped Markdown, code spans, names."""

from __future__ import annotations

import re
import string

from medseg.app.text import code_span, escape_markdown, one_line, shown_name
from tests.app.page_driver import plain


def test_escaped_markdown_shows_the_text_literally():
    for text in ("my_scan_1.png", "[click](javascript:alert(1))", "<img src=x onerror=alert(1)>",
                 "**b** $x$ :red[y] # h `c` ~s~ | t \\ &amp;", string.punctuation):
        escaped = escape_markdown(text)
        assert plain(escaped) == text
        unescaped = re.sub(r"\\.", "", escaped)  # what is left outside the escapes
        assert not set(unescaped) & set(string.punctuation), escaped
    assert escape_markdown("a_b") == "a\\_b"
    assert escape_markdown("line one\nline two\r\n\tthree") == "line one line two three"


def test_code_span_holds_any_backticks():
    assert code_span("models/run_1") == "`models/run_1`"
    assert code_span("a`b") == "`` a`b ``"
    assert code_span("``x`") == "``` ``x` ```"
    assert code_span("two\nlines") == "`two lines`"


def test_shown_name_is_short_and_visible():
    assert shown_name("scan.png") == "scan.png"
    assert shown_name("a\x00b\u202egnp.exe") == "a?b?gnp.exe"  # NUL and a right-to-left override
    assert shown_name("\udc80.png") == "?.png"  # a lone surrogate: not text
    long = shown_name("x" * 300 + ".nii.gz")
    assert len(long) == 60 and long.endswith("x.nii.gz") and "…" in long
    assert one_line(" a \n b ") == "a b"
