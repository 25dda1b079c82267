"""Strings from users and libraries made safe for the reports: no terminal codes, no control
characters (XML 1.0 forbids most of them: one ESC makes a junit.xml unparseable), and, for
Markdown table cells, no pipes, newlines or raw HTML.

Error messages carry whatever a user's code or a library printed (colour codes from a data
function's exception, NUL bytes from a binary file name), so every report writer passes its
strings through here.
"""

from __future__ import annotations

import re
from typing import Any

# CSI sequences (colours, cursor moves) and other two-character escape sequences.
TERMINAL_CODES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
# C0 controls other than tab and newline, DEL, C1 controls, lone surrogates, and the two
# non-characters XML refuses.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def plain_text(value: Any) -> str:
    """`str(value)` without terminal codes; other control characters shown as `\\xNN`."""
    text = TERMINAL_CODES.sub("", str(value))
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def markdown_cell(value: Any) -> str:
    """A string safe inside a Markdown table cell: plain text, one line, no pipes, no raw
    HTML (`<script>` is shown, never run)."""
    text = plain_text(value)
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, safe)
    return " ".join(text.split())
