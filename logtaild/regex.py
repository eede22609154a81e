"""Linear-time regular expressions for the patterns a config gives: the one importer of google-re2.

A route rule (`routes.rules[].match`) is searched in every new route from the log, and a stranger
wrote the route. Python's `re` backtracks: a pattern such as `^/(a+)+$` takes exponential time on a
crafted route and would stall the loop thread. RE2 runs in time linear in the route for any pattern.
The price is syntax RE2 does not have, which is a config error here, at load and on reload:
backreferences (`\\1` or `(?P=name)` in the pattern; groups in the *replacement* are fine),
lookahead and lookbehind (`(?=`, `(?!`, `(?<=`, `(?<!`), possessive quantifiers and atomic groups,
`\\Z`, and counted repetitions above 1000.

The replacement keeps `re.sub`'s template syntax exactly (`\\1`, `\\g<name>`, `\\g<0>`, `\\n`...):
Python's own parser reads it, once, when the rule is compiled (RE2's Python wrapper has its own
template code, which garbles non-ASCII text).

A bottom layer of its own, below config: config checks rules with it, count matches with it, and
neither may import the other. re2 is imported by the first pattern compiled, not with this module: a
config without route rules and SLOs (every plain `--file`) never needs it, and start-up skips it.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Protocol

#: the groups a rule may have (each needs a placeholder character of its own, see `_template`)
MAX_GROUPS = 200
#: placeholders for the groups while Python expands a template: supplementary private use plane B,
#: which no URL route and no sane template holds (a template that does is refused)
_MARK = 0x10FE00


class RegexError(ValueError):
    """A pattern or replacement a rule cannot use; the message says why, on one line, and `part` which
    of the two ("match" or "replace") it is about."""

    def __init__(self, message: str, part: str = "match") -> None:
        super().__init__(message)
        self.part = part


class _Match(Protocol):
    def group(self, index: int) -> str | None: ...


class _Compiled(Protocol):
    """The part of RE2's compiled pattern used here."""

    @property
    def groups(self) -> int: ...
    @property
    def groupindex(self) -> dict[str, int]: ...
    def search(self, text: str) -> _Match | None: ...
    def fullmatch(self, text: str) -> _Match | None: ...
    def sub(self, replacement: object, text: str) -> str: ...


@functools.cache
def _options() -> object:
    """RE2's options for every pattern, made by the first (see the module's docstring)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would print each rejected pattern to stderr, beside our one-line error
    return options


class Rule:
    """`match` compiled by RE2, and `replace` as `re.sub` reads it; RegexError if either is unusable."""

    def __init__(self, match: str, replace: str) -> None:
        import re2  # on first use (start-up, see the module's docstring)

        self.match = match
        self.replace = replace
        try:
            self._compiled: _Compiled = re2.compile(match, _options())
        except re2.error as exc:
            raise RegexError(f"{_message(exc)} (RE2 syntax: no backreferences or lookarounds)") from None
        self._pieces = _template(self._compiled, replace)

    def search(self, text: str) -> bool:
        """Whether the pattern is found anywhere in `text`."""
        return self._compiled.search(text) is not None

    def sub(self, text: str) -> str:
        """`text` with every match replaced by the expanded template (as `re.sub(match, replace, text)`)."""
        return self._compiled.sub(self._expand, text)

    def _expand(self, match: _Match) -> str:
        return "".join(piece if isinstance(piece, str) else match.group(piece) or "" for piece in self._pieces)


class FullMatch:
    """A pattern that must match a whole text (an SLO's `route`), compiled by RE2; RegexError if it cannot."""

    def __init__(self, pattern: str) -> None:
        import re2  # on first use (start-up, see the module's docstring)

        self.pattern = pattern
        try:
            self._compiled: _Compiled = re2.compile(pattern, _options())
        except re2.error as exc:
            raise RegexError(f"{_message(exc)} (RE2 syntax: no backreferences or lookarounds)") from None

    def __call__(self, text: str) -> bool:
        return self._compiled.fullmatch(text) is not None


class RuleSet:
    """Rules in order, the first whose pattern is found applying: one RE2 pass over the text finds
    which rules match (an RE2 set), so many rules cost about what one does."""

    def __init__(self, rules: Sequence[tuple[str, str]]) -> None:
        self.rules = tuple(Rule(match, replace) for match, replace in rules)
        #: the RE2 set; none without rules, so that a limiter without rules never imports re2 (start-up)
        self._set: Any = None
        if self.rules:
            import re2

            self._set = re2.Set.SearchSet(_options())
            for rule in self.rules:
                self._set.Add(rule.match)  # each compiled alone above, so none fails here
            self._set.Compile()

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __deepcopy__(self, memo: dict[int, object]) -> RuleSet:
        # an RE2 set cannot be copied (nor pickled); the catch-up worker copies its limiter
        return RuleSet([(rule.match, rule.replace) for rule in self.rules])

    def apply(self, text: str) -> str | None:
        """`text` rewritten by the first rule whose pattern it holds, or None if no rule matches."""
        if not self.rules:
            return None
        found = self._set.Match(text)
        return self.rules[min(found)].sub(text) if found else None


def _template(compiled: _Compiled, replace: str) -> list[str | int]:
    """The template as literal text and group numbers, read by Python's own `re.sub`.

    A Python pattern with the same groups (numbers and names) matches a string of placeholders, one
    per group; expanding the template on it leaves the literal text (escapes done) and a placeholder
    wherever a group goes. The whole match (`\\g<0>`) is the run of placeholders between two marks.
    """
    if compiled.groups > MAX_GROUPS:
        raise RegexError(f"more than {MAX_GROUPS} groups")
    if any(_MARK <= ord(ch) <= _MARK + MAX_GROUPS + 1 for ch in replace):
        raise RegexError("the replacement holds a private-use character logtaild reserves", "replace")
    names = {index: name for name, index in compiled.groupindex.items()}
    marks = [chr(_MARK + index) for index in range(compiled.groups + 1)]  # marks[0] brackets the whole match
    groups = "".join(f"(?P<{names[i]}>{marks[i]})" if i in names else f"({marks[i]})"
                     for i in range(1, compiled.groups + 1))
    try:
        expanded = re.sub(f"{marks[0]}{groups}{marks[0]}", replace, "".join(marks[1:]).join([marks[0]] * 2))
    except re.error as exc:
        # a group name RE2 allows but Python does not (`(?P<1a>x)`) fails here too: the pattern's fault
        raise RegexError(str(exc), "match" if "group name" in str(exc) and "unknown" not in str(exc)
                         else "replace") from None
    except IndexError as exc:
        raise RegexError(str(exc), "replace") from None
    pieces: list[str | int] = []
    literal, in_whole = [], False
    for ch in expanded:
        index = ord(ch) - _MARK
        if not 0 <= index <= compiled.groups:
            if not in_whole:
                literal.append(ch)
            continue
        if literal:
            pieces.append("".join(literal))
            literal = []
        if index == 0:
            if in_whole:
                pieces.append(0)
            in_whole = not in_whole
        elif not in_whole:
            pieces.append(index)
    if literal:
        pieces.append("".join(literal))
    return pieces


def _message(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return " ".join(text.split())  # one line, whatever the engine wrote
