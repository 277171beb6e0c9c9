"""Rule text -> Rule, with every error at its line:column, the term and the reason.

    rule   := ACTION [PROTO] [from ADDR [port PORTS]] [to ADDR [port PORTS]]
              [on IFACE] [in|out] [ttl DURATION] ["COMMENT"]

Clauses after the action may come in any order, each at most once. See README.md.
Only what compiles to map entries parses; limits that depend on the whole rule set
(number of rules, port-trie entries) are checked by `compile.py`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from .spec import ACTIONS, PROTOS, Match, Rule

MAX_TTL = 30 * 86400
MAX_COMMENT = 200
MAX_LINE = 1000
_TOKEN = re.compile(r'"[^"]*"?|[^\s"]+')
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEYWORDS = ("from", "to", "port", "on", "in", "out", "ttl")


@dataclass(frozen=True)
class RuleError(Exception):
    line: int
    col: int  # 1-based
    term: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}:{self.col}: {self.term!r}: {self.reason}"


@dataclass(frozen=True)
class _Tok:
    text: str
    col: int


def _tokens(text: str, line: int) -> list[_Tok]:
    for i, ch in enumerate(text):
        if ch != "\t" and (ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0):
            raise RuleError(line, i + 1, repr(ch)[1:-1], "control character in rule text")
    return [_Tok(m.group(), m.start() + 1) for m in _TOKEN.finditer(text)]


def parse_duration(text: str) -> float | None:
    """'15m', '1h30m', '2d' -> seconds; None when it is not a duration."""
    if not text or _DURATION.sub("", text):
        return None
    return float(sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(text)))


def _address(tok: _Tok, line: int) -> str | None:
    if tok.text == "any":
        return None
    try:
        net = ipaddress.ip_network(tok.text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(tok.text, strict=False)
            raise RuleError(line, tok.col, tok.text, f"host bits set; the network is {fixed}") from None
        raise RuleError(
            line,
            tok.col,
            tok.text,
            "not an address: expected any, an IPv4/IPv6 address or a CIDR such as 203.0.113.0/24",
        ) from None
    return str(net)


def _port_range(tok: _Tok, line: int) -> tuple[int, int]:
    lo_s, sep, hi_s = tok.text.partition("-")
    if not (lo_s.isdigit() and (not sep or hi_s.isdigit())) or not lo_s.isascii() or not hi_s.isascii():
        raise RuleError(line, tok.col, tok.text, "not a port: expected N or N-M with 1 <= N <= M <= 65535")
    lo = int(lo_s[:6]) if len(lo_s) <= 6 else 10**6
    hi = (int(hi_s[:6]) if len(hi_s) <= 6 else 10**6) if sep else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise RuleError(line, tok.col, tok.text, "port out of range: ports are 1-65535")
    if lo > hi:
        raise RuleError(line, tok.col, tok.text, f"empty range: {lo} is above {hi}")
    return (lo, hi)


def _iface(tok: _Tok, line: int) -> str:
    name = tok.text
    if len(name.encode()) > 15 or "/" in name or name in KEYWORDS or name.startswith('"'):
        raise RuleError(line, tok.col, name, "not an interface name (1-15 characters, no '/')")
    return name


def parse_rule(text: str, line: int = 1) -> Rule | None:
    """One line of rule text; None for a blank or '#' comment line."""
    if len(text) > MAX_LINE:
        raise RuleError(
            line, MAX_LINE + 1, text[MAX_LINE : MAX_LINE + 10], f"line longer than {MAX_LINE} characters"
        )
    toks = _tokens(text, line)
    if not toks or toks[0].text.startswith("#"):
        return None
    head = toks[0]
    if head.text not in ACTIONS:
        raise RuleError(line, head.col, head.text, "expected an action: count, allow or deny")
    clauses = _Clauses(toks, line, end_col=len(text.rstrip()) + 1)
    clauses.read()
    match = _build_match(clauses.fields, line)
    return Rule(action=head.text, match=match, ttl=clauses.ttl, comment=clauses.comment)


class _Clauses:
    """The terms after the action, read left to right: each clause at most once."""

    def __init__(self, toks: list[_Tok], line: int, *, end_col: int) -> None:
        self.toks, self.line, self.end_col = toks, line, end_col
        self.fields: dict[str, object] = {"proto": "any"}
        self.seen: dict[str, _Tok] = {}
        self.ttl: float | None = None
        self.comment = ""

    def read(self) -> None:
        i = 1
        while i < len(self.toks):
            i = self._clause(i)

    def _clause(self, i: int) -> int:
        """Read the clause starting at token i; the index of the next one."""
        tok = self.toks[i]
        word = tok.text
        if word in PROTOS:
            self._once("protocol", tok)
            self.fields["proto"] = word
            return i + 1
        if word in ("from", "to"):
            return self._endpoint(i, tok)
        if word == "port":
            raise RuleError(
                self.line,
                tok.col,
                word,
                "port belongs to a from or to clause: 'from ADDR port N' or 'to ADDR port N' "
                "(ADDR may be any)",
            )
        if word == "on":
            self._once("interface", tok)
            self.fields["iface"] = _iface(self._need(i + 1, "an interface name"), self.line)
            return i + 2
        if word in ("in", "out"):
            self._once("direction", tok)
            self.fields["direction"] = word
            return i + 1
        if word == "ttl":
            return self._ttl(i, tok)
        if word.startswith('"'):
            return self._comment(i, tok)
        if word.startswith("#"):
            return len(self.toks)  # a trailing comment ends the rule
        raise RuleError(
            self.line,
            tok.col,
            word[:40],
            'unknown term: expected tcp/udp/icmp/any, from, to, on, in, out, ttl or a "comment"',
        )

    def _need(self, i: int, what: str) -> _Tok:
        if i >= len(self.toks):
            raise RuleError(
                self.line,
                self.end_col,
                self.toks[i - 1].text,
                f"expected {what} after it, found the end of the line",
            )
        return self.toks[i]

    def _once(self, key: str, tok: _Tok) -> None:
        if key in self.seen:
            first = self.seen[key]
            raise RuleError(self.line, tok.col, tok.text, f"{key} given twice (first at column {first.col})")
        self.seen[key] = tok

    def _endpoint(self, i: int, tok: _Tok) -> int:
        """from|to ADDR [port N[-M]]"""
        word = tok.text
        self._once(word, tok)
        addr_tok = self._need(i + 1, "an address (any, IP or CIDR)")
        self.fields["src" if word == "from" else "dst"] = (_address(addr_tok, self.line), addr_tok)
        i += 2
        if i < len(self.toks) and self.toks[i].text == "port":
            port_tok = self._need(i + 1, "a port or range N-M")
            self.fields["sport" if word == "from" else "dport"] = (_port_range(port_tok, self.line), port_tok)
            i += 2
        return i

    def _ttl(self, i: int, tok: _Tok) -> int:
        self._once("ttl", tok)
        dtok = self._need(i + 1, "a duration such as 30s, 15m, 2h or 1d")
        ttl = parse_duration(dtok.text)
        if ttl is None:
            raise RuleError(
                self.line,
                dtok.col,
                dtok.text,
                "not a duration: use digits with s, m, h or d, e.g. 90s, 15m, 1h30m",
            )
        if not 1 <= ttl <= MAX_TTL:
            raise RuleError(self.line, dtok.col, dtok.text, "ttl must be between 1s and 30d")
        self.ttl = ttl
        return i + 2

    def _comment(self, i: int, tok: _Tok) -> int:
        word = tok.text
        self._once("comment", tok)
        if len(word) < 2 or not word.endswith('"'):
            raise RuleError(self.line, tok.col, word[:20], 'unterminated comment: a closing " is missing')
        comment = word[1:-1]
        if len(comment) > MAX_COMMENT:
            raise RuleError(self.line, tok.col, word[:20], f"comment longer than {MAX_COMMENT} characters")
        self.comment = comment
        return i + 1


def _build_match(fields: dict[str, Any], line: int) -> Match:
    src = fields.get("src", (None, None))
    dst = fields.get("dst", (None, None))
    if (
        src[0] is not None
        and dst[0] is not None
        and ipaddress.ip_network(src[0]).version != ipaddress.ip_network(dst[0]).version
    ):
        tok = dst[1]
        raise RuleError(line, tok.col, tok.text, "from and to mix IPv4 and IPv6; no packet can match")
    for key in ("sport", "dport"):
        if key in fields and fields["proto"] not in ("tcp", "udp"):
            tok = fields[key][1]
            raise RuleError(
                line, tok.col, tok.text, "a port needs the protocol tcp or udp (put it after the action)"
            )
    return Match(
        proto=fields["proto"],
        src=src[0],
        dst=dst[0],
        sport=fields["sport"][0] if "sport" in fields else None,
        dport=fields["dport"][0] if "dport" in fields else None,
        iface=fields.get("iface"),
        direction=fields.get("direction"),
    )


def parse_text(text: str) -> tuple[list[tuple[int, Rule]], list[RuleError]]:
    """Every line: (line number, rule) for the good ones and every error (not only the first)."""
    rules, errors = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            rule = parse_rule(line, n)
        except RuleError as exc:
            errors.append(exc)
            continue
        if rule is not None:
            rules.append((n, rule))
    return rules, errors
