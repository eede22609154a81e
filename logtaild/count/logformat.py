"""Server log format strings compiled into parsers: nginx's `log_format` and Apache's `LogFormat`.

A format string is compiled once into one regular expression built from its literals (and
`fullmatch`ed per line): every `$variable` (nginx) or `%directive` (Apache) is a field. The fields
logtaild understands feed the metrics (request, status, size, request time, upstream times); any
field can become a label (`label_fields`); all others are matched as text and skipped. Each field's
pattern is possessive and stops at the literal that follows it, so matching takes linear time
whatever the line. A regex beat a split-by-literals scanner on the fixtures (one C call extracts
every field; see docs/performance.md for the figures).

`compile_format(server, text, ...)` builds a parser (`Parser`, as in formats.py); `FormatError` says
why a string cannot be compiled. `combined_preset` is the `combined` format: Apache's common format
with any number of trailing fields, and the lenient client part real logs need (X-Forwarded-For lists,
a quoted leading field, IPv6).
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from logtaild.count.formats import (
    CONNECT_ROUTE,
    LATENCY_SCALES,
    NO_REQUEST,
    ParseError,
    Parser,
    decode,
    parse_bytes,
    parse_latency_ms,
    parse_method,
    parse_request,
    parse_status,
    parse_upstream_ms,
    path_part,
    route_of,
    trace_id,
    unescape_logged,
)
from logtaild.count.labelcap import DEFAULT_MAX_VALUES, LabelCap
from logtaild.count.record import AccessRecord

SERVERS = ("nginx", "apache")
#: nginx's `escape=` parameter: how values were escaped when written
ESCAPES = ("default", "json", "none")


class FormatError(ValueError):
    """A format string that cannot be compiled, or a field it lacks; `key` is the file config key at fault."""

    def __init__(self, message: str, key: str = "log_format") -> None:
        super().__init__(message)
        self.key = key


# ---- what the fields mean ---------------------------------------------------------------------------

REQUEST, METHOD, URI, STATUS, BYTES, LATENCY, UPSTREAM, HOST, TIME, CLIENT = (
    "request", "method", "uri", "status", "bytes", "latency", "upstream", "host", "time", "client")


@dataclass(frozen=True)
class Spec:
    """What a field feeds (`role`, "" for text) and how its value looks."""

    role: str = ""
    #: among the fields of one role in a format, the lowest rank feeds the metric
    rank: int = 0
    #: latency and upstream fields: the multiplier to milliseconds
    scale: float = 1.0
    #: a pattern every value fits: such a field may touch the next one without a literal between
    shape: bytes = b""
    #: the value may be a list (`a, b : c`, as nginx writes the $upstream_* variables and proxies
    #: X-Forwarded-For), spaces included, so unquoted it does not end at the first space
    multi: bool = False


_STATUS = rb"[0-9]{3}"
_TIME_LOCAL = rb"[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"
_ISO8601 = rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[+-][0-9]{2}:[0-9]{2}|Z)"
#: nginx's multi-valued upstream times: `,` between retries, ` : ` between internal redirects
_TIMES = rb"(?:[0-9.]++|-)(?:(?:, ?| : )(?:[0-9.]++|-))*+"
_S, _MS, _US = LATENCY_SCALES["seconds"], LATENCY_SCALES["milliseconds"], LATENCY_SCALES["microseconds"]

NGINX_VARIABLES: dict[str, Spec] = {
    "request": Spec(REQUEST),
    "request_method": Spec(METHOD),
    "request_uri": Spec(URI), "uri": Spec(URI, 1), "document_uri": Spec(URI, 2),
    "status": Spec(STATUS, shape=_STATUS),
    "body_bytes_sent": Spec(BYTES), "bytes_sent": Spec(BYTES, 1),
    "request_time": Spec(LATENCY, scale=_S),
    "upstream_response_time": Spec(UPSTREAM, 0, _S, _TIMES),
    "upstream_header_time": Spec(UPSTREAM, 1, _S, _TIMES),
    "upstream_connect_time": Spec(UPSTREAM, 2, _S, _TIMES),
    "upstream_queue_time": Spec(UPSTREAM, 3, _S, _TIMES),
    "host": Spec(HOST), "server_name": Spec(HOST, 1), "http_host": Spec(HOST, 2),
    "time_local": Spec(TIME, shape=_TIME_LOCAL), "time_iso8601": Spec(TIME, shape=_ISO8601),
    "msec": Spec(TIME, shape=rb"[0-9]+\.[0-9]+"),
    "remote_addr": Spec(CLIENT), "http_x_forwarded_for": Spec(CLIENT, 1, multi=True),
    "realip_remote_addr": Spec(CLIENT, 2),
}
#: any other $upstream_* variable ($upstream_addr, $upstream_status...): one value per upstream tried
_UPSTREAM_TEXT = Spec(multi=True)

#: Apache directives by their key: the letter, with `>`/`<` for the status, `{param}` where it matters
APACHE_DIRECTIVES: dict[str, Spec] = {
    "h": Spec(CLIENT), "a": Spec(CLIENT, 1), "{c}a": Spec(CLIENT, 2),
    "t": Spec(TIME, shape=rb"\[[^\]\n]{1,64}\]"),
    "r": Spec(REQUEST), "m": Spec(METHOD), "U": Spec(URI, shape=rb'[^\s?"]*+'),  # %U%q: the query follows
    ">s": Spec(STATUS, 0, shape=_STATUS), "s": Spec(STATUS, 1, shape=_STATUS), "<s": Spec(STATUS, 2, shape=_STATUS),
    "b": Spec(BYTES), "B": Spec(BYTES, 1), "O": Spec(BYTES, 2),
    "D": Spec(LATENCY, 0, _US), "{us}T": Spec(LATENCY, 0, _US), "{ms}T": Spec(LATENCY, 1, _MS),
    "T": Spec(LATENCY, 2, _S), "{s}T": Spec(LATENCY, 2, _S),
    "v": Spec(HOST), "V": Spec(HOST, 1),
}


@dataclass(frozen=True)
class Field:
    """A variable or directive of a format: its name as logtaild spells it, and what it means."""

    name: str
    spec: Spec


Token = bytes | Field  # a literal or a field


# ---- reading a format string ------------------------------------------------------------------------

_BACKSLASH = {'"': '"', "'": "'", "\\": "\\", "t": "\t"}


def _unbackslash(text: str) -> str:
    """Undo the directive's own escapes (`\\"`, `\\\\`, `\\t`), as the server does when it reads its config."""
    return re.sub(r"\\(.)", lambda m: _BACKSLASH.get(m.group(1), m.group(0)), text) if "\\" in text else text


#: nginx's directive as written in nginx.conf: `[log_format] [name] [escape=...] '...' ['...'...][;]`.
#: The nginx patterns are strings, compiled (and cached) by `re` when the first nginx format is read:
#: start-up without one does not compile them.
_NGINX_DIRECTIVE = (
    r"(?:log_format\s+)?(?:(?!escape=)\w+\s+)?(?:escape=(?P<escape>\w+)\s+)?"
    r"(?P<strings>(?:'(?:[^'\\]|\\.)*'\s*)+);?")
_NGINX_PIECE = r"'((?:[^'\\]|\\.)*)'"
#: Apache's directive: `[LogFormat] "..." [nickname]`
_APACHE_DIRECTIVE_LINE = re.compile(r'(?:LogFormat\s+)?"((?:[^"\\]|\\.)*)"(?:\s+[\w-]+)?', re.S)


def prepare(server: str, text: str) -> tuple[str, str]:
    """A format string as given -> (escape mode, the format itself).

    nginx: the format as in nginx.conf, one or more `'...'` strings (joined, as nginx does), with an
    optional leading `escape=json|default|none` (and, pasted whole, `log_format name` before it and
    `;` after it), or the bare text they make. Apache: the LogFormat argument, its quotes written as
    `"` or `\\"`, or pasted whole with its outer quotes (and `LogFormat`, and a nickname).
    """
    text = text.strip()
    escape = "default"
    if server == "nginx":
        directive = re.fullmatch(_NGINX_DIRECTIVE, text, re.S)
        if directive:
            escape = directive.group("escape") or escape
            text = "".join(re.findall(_NGINX_PIECE, directive.group("strings"), re.S))
        else:
            match = re.match(r"escape=(\w+)\s+", text)
            if match:
                escape, text = match.group(1), text[match.end():]
        if escape not in ESCAPES:
            raise FormatError(f"escape={escape}: must be one of {', '.join(ESCAPES)}")
    else:
        directive = _APACHE_DIRECTIVE_LINE.fullmatch(text)
        if directive:
            text = directive.group(1)
    text = _unbackslash(text)
    if "\n" in text or "\r" in text:
        raise FormatError("a format with a line break cannot be read line by line")
    if not text:
        raise FormatError("empty format")
    return escape, text


_NGINX_NAME = r"[A-Za-z0-9_]+"  # a string, as the patterns above


def tokenize_nginx(text: str) -> list[Token]:
    """`$name` and `${name}` are fields; everything else is literal."""
    variable = re.compile(_NGINX_NAME)  # from re's cache after the first nginx format
    tokens: list[Token] = []
    literal: list[str] = []
    pos = 0
    while pos < len(text):
        dollar = text.find("$", pos)
        if dollar < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:dollar])
        if text.startswith("{", dollar + 1):
            end = text.find("}", dollar + 2)
            name = text[dollar + 2:end] if end >= 0 else ""
            if end < 0 or not variable.fullmatch(name):
                raise FormatError(f"unterminated or empty ${{...}} at character {dollar + 1}")
            pos = end + 1
        else:
            match = variable.match(text, dollar + 1)
            if match is None:
                raise FormatError(f"a $ not followed by a variable name at character {dollar + 1}")
            name, pos = match.group(), match.end()
        _flush(tokens, literal)
        spec = NGINX_VARIABLES.get(name) or (_UPSTREAM_TEXT if name.startswith("upstream_") else Spec())
        tokens.append(Field("$" + name, spec))
    _flush(tokens, literal)
    return tokens


_APACHE_DIRECTIVE = re.compile(
    r"%(?P<cond>!?[0-9,]*)(?P<mod>[<>]?)(?:\{(?P<param>[^}]*)\})?(?P<letter>\^[a-z]{2}|[A-Za-z])")


def tokenize_apache(text: str) -> list[Token]:
    """`%x`, `%>s`, `%{param}x` (with Apache's status conditions, `%400,501{...}i`) are fields; `%%` is a `%`."""
    tokens: list[Token] = []
    literal: list[str] = []
    pos = 0
    while pos < len(text):
        percent = text.find("%", pos)
        if percent < 0:
            literal.append(text[pos:])
            break
        literal.append(text[pos:percent])
        if text.startswith("%", percent + 1):
            literal.append("%")
            pos = percent + 2
            continue
        match = _APACHE_DIRECTIVE.match(text, percent)
        if match is None:
            what = "an unterminated %{" if "{" in text[percent:percent + 12] and "}" not in text[percent:] \
                else "a % not followed by a directive"
            raise FormatError(f"{what} at character {percent + 1}")
        _flush(tokens, literal)
        tokens.append(_apache_field(match.group("mod"), match.group("param"), match.group("letter")))
        pos = match.end()
    _flush(tokens, literal)
    return tokens


def _apache_field(mod: str, param: str | None, letter: str) -> Field:
    """The field of one directive; header, note, environment and cookie names are case-insensitive."""
    if param is not None and letter in "ioeCn":
        param = param.lower()
    name = "%" + (mod if letter == "s" else "") + (f"{{{param}}}" if param is not None else "") + letter
    key = name[1:] if letter == "s" else (f"{{{param}}}{letter}" if param is not None else letter)
    return Field(name, APACHE_DIRECTIVES.get(key, Spec()))


def _flush(tokens: list[Token], literal: list[str]) -> None:
    """Append the pending literal text (merged) as one token."""
    text = "".join(literal)
    literal.clear()
    if text:
        tokens.append(text.encode("utf-8"))


def field_key(server: str, name: str) -> str:
    """A field name as a user writes it (`${host}`, `%{X-Version}i`) -> the name the format uses."""
    tokens = tokenize_nginx(name) if server == "nginx" else tokenize_apache(name)
    if len(tokens) != 1 or not isinstance(tokens[0], Field):
        raise FormatError(f"{name!r} is not one {'variable' if server == 'nginx' else 'directive'}")
    return tokens[0].name


# ---- compiling --------------------------------------------------------------------------------------

_QUOTED_VALUE = rb'(?:[^"\\]++|\\.)*+'  # Apache writes \" inside quotes, nginx \x22
_LENIENT_CLIENT = rb"(?:\[[0-9A-Fa-f:.]+\]|[^\[]*?[^\s\[])"  # XFF lists, a quoted field, IPv6
_BRACKETED = rb"[^\]\n]{1,64}+"
_LIST = rb"[^ ,]*+(?:(?:, ?| : )[^ ,]++)*+"
_TRAILING = rb'(?P<rest>(?: +(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^\s"]++))*+)'


def _pattern(tokens: Sequence[Token], index: int, head_end: int) -> bytes:
    """The regex of the field at `index`: shaped by its meaning and the literals around it."""
    item = tokens[index]
    assert isinstance(item, Field)
    prev = tokens[index - 1] if index else b""
    nxt = tokens[index + 1] if index + 1 < len(tokens) else None
    spec = item.spec
    if isinstance(nxt, Field):
        if not spec.shape:
            raise FormatError(f"{item.name} is followed by {nxt.name} with nothing between them to tell "
                              "where one ends")
        return spec.shape
    if not isinstance(prev, bytes):
        prev = b""  # the previous field had a fixed shape: no literal between them
    if index == 0 and spec.role == CLIENT and nxt is not None and nxt[:1] == b" " and head_end > 0:
        return _LENIENT_CLIENT
    if prev.endswith(b'"') and nxt is not None and nxt.startswith(b'"'):
        return _QUOTED_VALUE
    if spec.role == TIME:
        return _BRACKETED if prev.endswith(b"[") and nxt is not None and nxt.startswith(b"]") else spec.shape
    if spec.role == UPSTREAM:
        return spec.shape  # the values hold spaces (`0.004, 0.012 : 0.001`)
    if nxt is None:
        return rb"\S*+"
    if index < head_end and nxt[:1].isspace():
        return rb"[^\s\[]*+"  # the ident and user fields before the time, as the combined format has them
    if spec.multi and nxt[:1] == b" ":
        return _LIST
    return b"[^" + re.escape(nxt[:1]) + b"]*+"


def _head_end(tokens: Sequence[Token]) -> int:
    """The index of the first time field (or `[` literal): the client part before it is lenient."""
    for index, item in enumerate(tokens):
        if isinstance(item, Field) and item.spec.role == TIME or isinstance(item, bytes) and b"[" in item:
            return index
    return 0


def _regex(tokens: Sequence[Token], wanted: set[str], trailing: bool) -> tuple[re.Pattern[bytes], dict[str, int]]:
    """One pattern for the whole line, and the group number of each field in `wanted` (its first
    occurrence; groups are numbered in the order the fields are written)."""
    head_end = _head_end(tokens)
    parts: list[bytes] = []
    groups: dict[str, int] = {}
    for index, item in enumerate(tokens):
        if isinstance(item, bytes):
            parts.append(re.escape(item))
            continue
        pattern = _pattern(tokens, index, head_end)
        if item.name in wanted and item.name not in groups:
            groups[item.name] = len(groups) + 1
            parts.append(b"(" + pattern + b")")
        else:
            parts.append(b"(?:" + pattern + b")")
    if trailing:
        parts.append(_TRAILING)
    parts.append(rb"[ \t\r]*+")
    return re.compile(b"".join(parts), re.S), groups


def _chosen(fields: Sequence[Field]) -> dict[str, Field]:
    """The field that feeds each role: the lowest rank, the first written on a tie."""
    chosen: dict[str, Field] = {}
    for item in fields:
        role = item.spec.role
        if role and (role not in chosen or item.spec.rank < chosen[role].spec.rank):
            chosen[role] = item
    return chosen


# ---- values -----------------------------------------------------------------------------------------

def _unescape_json(raw: bytes) -> bytes:
    """A value nginx wrote with `escape=json` (`\\"`, `\\\\`, `\\u0001`) as UTF-8 bytes."""
    if b"\\" not in raw:
        return raw
    try:
        text = json.loads(b'"' + raw + b'"')
    except ValueError:
        raise ParseError("fields", "bad JSON escape") from None
    try:
        return str(text).encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("encoding", "lone surrogate") from None


UNESCAPES: dict[str, Callable[[bytes], bytes]] = {
    "default": unescape_logged, "json": _unescape_json, "none": lambda raw: raw}

def _method_and_uri(method: bytes | None, uri: bytes | None, unescape: Callable[[bytes], bytes]) -> tuple[str, str]:
    """(method, route) from separate method and URI fields (`$request_method $request_uri`, `%m %U`)."""
    label = NO_REQUEST if method is None or method in (b"-", b"") else parse_method(decode(unescape(method)))
    if uri is None or uri in (b"-", b""):
        return label, NO_REQUEST
    target = path_part(unescape(uri))
    if label == "CONNECT" and not target.startswith(b"/"):
        return label, CONNECT_ROUTE
    return label, route_of(decode(target))


# ---- the parser -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Where a compiled format's used fields are (group numbers) and how to read them."""

    request: int = 0
    method: int = 0
    uri: int = 0
    status: int = 0
    bytes: int = 0
    latency: int = 0
    latency_scale: float = 1.0
    upstream: int = 0
    upstream_scale: float = 1.0
    labels: tuple[tuple[str, int], ...] = ()
    #: presets: the trailing fields' request time, in this unit (None: not read)
    rest_scale: float | None = None
    #: the `exemplar_field`'s group (0: none)
    exemplar: int = 0


class CompiledFormat:
    """A format string compiled: its regex, its fields, and `parser()` for lines in that format."""

    def __init__(self, server: str, text: str, *, trailing: bool = False) -> None:
        self.server = server
        self.escape, self.text = prepare(server, text)
        self.tokens = tokenize_nginx(self.text) if server == "nginx" else tokenize_apache(self.text)
        self.fields = [item for item in self.tokens if isinstance(item, Field)]
        if not self.fields:
            raise FormatError("no field in the format")
        self.chosen = _chosen(self.fields)
        self.trailing = trailing
        self._regex(())  # compile errors (adjacent fields) surface here, not at the first line

    @property
    def names(self) -> list[str]:
        """Every field of the format, as written (canonical)."""
        return [item.name for item in self.fields]

    def key(self, name: str, where: str) -> str:
        """A user's field name -> the format's; FormatError (about config key `where`) when it has none."""
        try:
            key = field_key(self.server, name)
        except FormatError as exc:
            raise FormatError(str(exc), where) from None
        if key not in self.names:
            raise FormatError(f"{name} is not a field of the log format (its fields: {', '.join(self.names)})",
                              where)
        return key

    def _regex(self, extra: Sequence[str]) -> tuple[re.Pattern[bytes], dict[str, int]]:
        used = {item.name for item in self.chosen.values() if item.spec.role not in (HOST, TIME, CLIENT)}
        return _regex(self.tokens, used | set(extra), self.trailing)

    def parser(self, *, upstream_field: str | None = None, upstream_scale: float = _S,
               label_fields: Mapping[str, str] | None = None, max_label_values: int = DEFAULT_MAX_VALUES,
               latency_unit: str | None = None, exemplar_field: str | None = None) -> Parser:
        """A parser for this format: which field is the upstream time, which fields are labels, which
        one holds a trace id for exemplars."""
        upstream = self.key(upstream_field, "upstream_field") if upstream_field else None
        if upstream is None and "upstream" in self.chosen and self.chosen[UPSTREAM].spec.rank == 0:
            upstream = self.chosen[UPSTREAM].name
        labels = {label: self.key(name, f"label_fields.{label}")
                  for label, name in sorted((label_fields or {}).items())}
        exemplar = self.key(exemplar_field, "exemplar_field") if exemplar_field else None
        regex, groups = self._regex([*([upstream] if upstream else []), *labels.values(),
                                     *([exemplar] if exemplar else [])])
        by_role = {role: groups[item.name] for role, item in self.chosen.items() if item.name in groups}
        spec = next((item.spec for item in self.fields if item.name == upstream), Spec(scale=upstream_scale))
        layout = Layout(
            by_role.get(REQUEST, 0), by_role.get(METHOD, 0), by_role.get(URI, 0), by_role.get(STATUS, 0),
            by_role.get(BYTES, 0), by_role.get(LATENCY, 0),
            self.chosen[LATENCY].spec.scale if LATENCY in self.chosen else 1.0,
            groups[upstream] if upstream else 0, spec.scale if spec.role == UPSTREAM else upstream_scale,
            tuple((label, groups[name]) for label, name in labels.items()),
            LATENCY_SCALES[latency_unit] if latency_unit and self.trailing else None,
        )
        if exemplar:
            layout = dataclasses.replace(layout, exemplar=groups[exemplar])
        if not layout.status:
            raise FormatError("the format has no status field ($status, %>s)")
        cap = LabelCap(max_label_values, frozenset(labels))
        parse = _make_parse(regex, layout, UNESCAPES[self.escape], cap)
        program = self._core_program(upstream) if not labels and not self.trailing and exemplar is None else None
        if program is not None:  # the compiled core's scanner for this format (see _scan.h)
            setattr(parse, "core_format", ("program", {  # noqa: B010
                "ops": program, "latency_scale": layout.latency_scale, "upstream_scale": layout.upstream_scale,
                "unescape": self.escape == "default"}))
        setattr(parse, "has_upstream", bool(layout.upstream))  # noqa: B010 (the aggregator's slot width)
        setattr(parse, "label_cap", cap)  # noqa: B010 (merged counts go through the same cap)
        return parse


    def _core_program(self, upstream: str | None) -> list[tuple[int, int, int, bytes]] | None:
        """The format as the compiled core's scanner reads it: (kind, stop byte, role, literal) per token,
        or None when a field's pattern is not one the scanner reads exactly as the regex does (then the
        Python parser counts every line). Kinds and roles are _scan.h's LS_OP_* and LS_ROLE_*."""
        if self.escape not in ("default", "none") or REQUEST not in self.chosen or STATUS not in self.chosen:
            return None
        roles = {self.chosen[REQUEST].name: 1, self.chosen[STATUS].name: 2}
        for name, number in ((BYTES, 3), (LATENCY, 4)):
            if name in self.chosen:
                roles[self.chosen[name].name] = number
        if upstream:
            roles[upstream] = 5
        head_end = _head_end(self.tokens)
        ops: list[tuple[int, int, int, bytes]] = []
        for index, item in enumerate(self.tokens):
            if isinstance(item, bytes):
                ops.append((0, 0, 0, item))
                continue
            pattern = _pattern(self.tokens, index, head_end)
            nxt = self.tokens[index + 1] if index + 1 < len(self.tokens) else None
            kind = _CORE_KINDS.get(pattern)
            stop = 0
            if kind is None and isinstance(nxt, bytes) and pattern == b"[^" + re.escape(nxt[:1]) + b"]*+":
                kind, stop = 8, nxt[0]
            if kind is None:
                return None
            role = roles.pop(item.name, 0)  # the first occurrence is the regex's group
            if role == 1 and kind != 4:
                return None  # an unquoted request: Python reads it
            ops.append((kind, stop, role, b""))
        return ops if not roles else None


#: the compiled scanner's field kinds (_scan.h's LS_OP_*) by the pattern `_pattern` gives a field
_CORE_KINDS = {_LENIENT_CLIENT: 1, rb"[^\s\[]*+": 2, _BRACKETED: 3, _QUOTED_VALUE: 4, rb"\S*+": 5, _TIMES: 6,
               _LIST: 7, _TIME_LOCAL: 9, APACHE_DIRECTIVES["t"].shape: 10}

_LABEL_CACHE = 4096


def _make_parse(regex: re.Pattern[bytes], at: Layout, unescape: Callable[[bytes], bytes], cap: LabelCap) -> Parser:
    """The per-line function: one fullmatch, then each used field checked in the order of REASONS.

    Group numbers become tuple indices (`match.groups()` is one call for every field); a field the
    format lacks has index -1, which the `>= 0` tests skip.
    """
    fullmatch = regex.fullmatch
    request_at, method_at, uri_at = at.request - 1, at.method - 1, at.uri - 1
    status_at, bytes_at, latency_at, upstream_at = at.status - 1, at.bytes - 1, at.latency - 1, at.upstream - 1
    exemplar_at = at.exemplar - 1
    latency_scale, upstream_scale, rest_scale = at.latency_scale, at.upstream_scale, at.rest_scale
    # per label, raw bytes -> the admitted value: a hot value skips unescaping, decoding and the cap
    # (an admitted value stays admitted, and `__other__` stays so once the cap is full)
    label_at: tuple[tuple[str, int, dict[bytes, str]], ...] = tuple(
        (name, number - 1, {}) for name, number in at.labels)
    admit = cap.admit
    default_escape = unescape is unescape_logged

    def parse_format(line: bytes) -> AccessRecord:
        match = fullmatch(line)
        if match is None:
            raise ParseError("fields", "does not match the log format")
        fields = match.groups()
        if request_at >= 0:
            raw = fields[request_at]
            if raw == b"-" or not raw:
                method, route = NO_REQUEST, NO_REQUEST
            else:
                method, route = parse_request(unescape_logged(raw) if default_escape else unescape(raw))
        else:
            method, route = _method_and_uri(fields[method_at] if method_at >= 0 else None,
                                            fields[uri_at] if uri_at >= 0 else None, unescape)
        status = parse_status(fields[status_at])
        size = parse_bytes(fields[bytes_at]) if bytes_at >= 0 else 0
        latency = None
        if latency_at >= 0:
            raw = fields[latency_at]
            latency = None if raw == b"-" else parse_latency_ms(raw, latency_scale)
        elif rest_scale is not None:
            latency = _trailing_latency(match.group("rest"), rest_scale)
        if upstream_at < 0 and not label_at and exemplar_at < 0:
            return AccessRecord(route, method, status, size, latency)
        upstream = parse_upstream_ms(fields[upstream_at], upstream_scale) if upstream_at >= 0 else None
        labels = []
        for name, index, known in label_at:
            raw = fields[index]
            value = known.get(raw)
            if value is None:
                value = admit(name, decode(unescape(raw)))
                if len(known) >= _LABEL_CACHE:
                    known.clear()  # bounded: hostile values cannot grow it
                known[raw] = value
            labels.append((name, value))
        exemplar = trace_id(fields[exemplar_at]) if exemplar_at >= 0 else None
        return AccessRecord(route, method, status, size, latency, tuple(labels), upstream, exemplar)

    return parse_format


def _trailing_latency(rest: bytes, scale: float) -> float | None:
    """The combined format's request time: the last trailing field when it is bare and not `-`."""
    if not rest or rest.endswith(b'"'):
        return None
    last = rest.rsplit(b" ", 1)[-1]
    return None if last == b"-" else parse_latency_ms(last, scale)


# ---- presets ----------------------------------------------------------------------------------------

#: `combined` (and `common`): Apache's common format; referer, user agent and any further fields are
#: the trailing fields, whose last bare one is the request time with a `latency_unit`
COMBINED = '%h %l %u %t "%r" %>s %b'


def compile_format(server: str, text: str, *, upstream_field: str | None = None, upstream_scale: float = _S,
                   label_fields: Mapping[str, str] | None = None,
                   max_label_values: int = DEFAULT_MAX_VALUES, exemplar_field: str | None = None) -> Parser:
    """Compile `text` (nginx or Apache) and build its parser (see `CompiledFormat.parser`)."""
    if server not in SERVERS:
        raise FormatError(f"unknown server {server!r} (known: {', '.join(SERVERS)})")
    return CompiledFormat(server, text).parser(upstream_field=upstream_field, upstream_scale=upstream_scale,
                                               label_fields=label_fields, max_label_values=max_label_values,
                                               exemplar_field=exemplar_field)


def combined_preset(latency_unit: str | None = None, label_fields: Mapping[str, str] | None = None,
                    max_label_values: int = DEFAULT_MAX_VALUES, exemplar_field: str | None = None) -> Parser:
    """The `combined` format's parser, from the preset string.

    Without label fields or an exemplar field it names the compiled core's scanner for it (`core_format`:
    the format and the trailing request time's unit as a multiplier to ms, None when not read), which
    counts the lines this parser would give the same verdict for (see _scan.h).
    """
    parse = CompiledFormat("apache", COMBINED, trailing=True).parser(
        latency_unit=latency_unit, label_fields=label_fields, max_label_values=max_label_values,
        exemplar_field=exemplar_field)
    if not label_fields and not exemplar_field:
        setattr(parse, "core_format", ("combined", LATENCY_SCALES[latency_unit] if latency_unit else None))  # noqa: B010
    return parse
