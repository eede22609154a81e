"""Label values safe to print: the one escaping of text from the log, and the length cut.

Every value that came from a log line and reaches a person (a label on /metrics, the status page, the
terminal report, a Grafana legend) goes through `escape` once, when its series is created, so they all
show the same text. Escaped are the characters that can repaint a terminal, forge or reorder text, or
make two different values look identical:

- control characters: C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F), as `\\xNN`;
- line and paragraph separators (Zl, Zp) and every format character (Cf: bidirectional overrides and
  isolates, zero-width characters, the BOM, the soft hyphen, invisible operators such as U+2064,
  U+180E, tag characters such as U+E0041), as `\\uNNNN`, or `\\UNNNNNNNN` above U+FFFF;
- the backslash itself, as `\\\\`, so an escape in the output always stands for the character it
  names and a literal `\\x1b` typed into a URL cannot pass for an ESC.

The exposition format's own label escaping (backslash, double quote, newline) is applied on top by
`export/exposition.py`, as for any label value.

`printable` is the same escaping for text that may already be escaped (a label value read back from
the state file, a worker's counts, a file path): it leaves text with nothing to escape alone, so
applying it to a label value changes nothing. `cut` bounds a value's length in UTF-8 bytes.
"""
from __future__ import annotations

import functools
import re
import unicodedata

#: what ends a value `cut` shortened; "…" (U+2026, 3 bytes) is one character wide everywhere
MARKER = "…"
#: the Unicode categories escaped besides backslash: controls, format characters, line/paragraph separators
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: the planes that hold characters of those categories (plane 0, plane 1, and plane 14's tags); the
#: others are CJK ideographs, private use and unassigned, so scanning these three finds them all, in
#: a tenth of the time a scan of every code point takes
_PLANES = (range(0x20000), range(0xE0000, 0xF0000))


def _escaped_form(code: int) -> str:
    if code < 0x100:
        return f"\\x{code:02x}" if unicodedata.category(chr(code)) == "Cc" else f"\\u{code:04x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@functools.cache
def _tables() -> tuple[dict[int, str], re.Pattern[str]]:
    """(translate table, pattern of any character to escape but backslash), built on first use.

    Built from `unicodedata` rather than written out, so a newer Python's Unicode version (new format
    characters) is covered without a change here.
    """
    codes = [code for plane in _PLANES for code in plane
             if unicodedata.category(chr(code)) in ESCAPED_CATEGORIES]
    table = {code: _escaped_form(code) for code in codes}
    table[ord("\\")] = "\\\\"
    unsafe = re.compile("[" + "".join(f"\\U{code:08x}" for code in codes) + "]")
    return table, unsafe


def _plain_ascii(text: str) -> bool:
    """ASCII without controls: no character of ESCAPED_CATEGORIES (in ASCII they are the Cc controls,
    which isprintable rejects), so the tables (a scan of 196k code points at first use) are not needed."""
    return text.isascii() and text.isprintable()


def escape(text: str) -> str:
    """`text` with every character of ESCAPED_CATEGORIES and every backslash written as an escape.

    A text with nothing to escape comes back as the same object: a series key then shares its
    strings with the caches that lead to it instead of holding copies (3.7 MB at 20,000 series).
    """
    if _plain_ascii(text) and "\\" not in text:
        return text
    escaped = text.translate(_tables()[0])
    return text if escaped == text else escaped


def needs_escape(text: str) -> bool:
    """Whether `text` holds a character `escape` would rewrite (a backslash alone does not count)."""
    if _plain_ascii(text):
        return False
    return _tables()[1].search(text) is not None


def printable(text: str) -> str:
    """`text` unchanged if nothing in it needs escaping, else `escape(text)`.

    For values that may already be escaped label values: `printable(escape(x)) == escape(x)`, so a
    label value is never escaped twice. A value with an unsafe character is escaped whole (its
    backslashes too), so what it shows is never ambiguous either.
    """
    return escape(text) if needs_escape(text) else text


#: an escape sequence `escape` writes; a cut must not split one
_ESCAPE_SEQUENCE = re.compile(r"\\(?:\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def cut(value: str, max_bytes: int) -> str:
    """`value` if it is at most `max_bytes` long in UTF-8, else its longest prefix that fits with MARKER.

    The prefix ends on a character boundary and never inside an escape sequence, and depends only on
    the start of the value: two long values that agree on their first `max_bytes` bytes get the same
    result (a sequence's length is known from its second character).
    """
    if len(value) <= max_bytes // 4 or len(value.encode("utf-8")) <= max_bytes:
        return value  # the first test spares the encode: a character is at most 4 bytes
    budget = max(0, max_bytes - len(MARKER.encode("utf-8")))
    head = value.encode("utf-8")[:budget].decode("utf-8", "ignore")  # drops a split last character
    # a sequence is at most 10 characters; scanning from the start reads each `\\` pair as one
    for match in _ESCAPE_SEQUENCE.finditer(value, 0, len(head) + 10):
        if match.end() > len(head):
            head = head[:match.start()] if match.start() < len(head) else head
            break
    return head + MARKER


def label_value(text: str, max_bytes: int) -> str:
    """A raw value from the log as a label value: escaped, then cut to `max_bytes`."""
    return cut(escape(text), max_bytes)
