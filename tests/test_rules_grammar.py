"""Rule text parser: accepted forms, errors at line:column with the term and reason,
canonical text round trip, and (hypothesis) arbitrary input never crashes it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpftop.collectors.rules.grammar import RuleError, parse_rule, parse_text
from ebpftop.collectors.rules.spec import Match, format_rule


def test_issue_example():
    r = parse_rule('deny tcp from 203.0.113.0/24 to any port 6379 on eth0 in ttl 15m "scraper"')
    assert r.action == "deny"
    assert r.match == Match(
        proto="tcp",
        src="203.0.113.0/24",
        dst=None,
        sport=None,
        dport=(6379, 6379),
        iface="eth0",
        direction="in",
    )
    assert r.ttl == 900 and r.comment == "scraper"


@pytest.mark.parametrize(
    "text,match",
    [
        ("count", Match()),
        ("allow udp to 2001:db8::/32 port 53", Match(proto="udp", dst="2001:db8::/32", dport=(53, 53))),
        ("deny tcp from any port 1024-65535 out", Match(proto="tcp", sport=(1024, 65535), direction="out")),
        ("count icmp from 10.1.2.3", Match(proto="icmp", src="10.1.2.3/32")),
        ("deny in on eth1 to 192.0.2.0/24", Match(dst="192.0.2.0/24", iface="eth1", direction="in")),
    ],
)
def test_accepted(text, match):
    assert parse_rule(text).match == match


@pytest.mark.parametrize(
    "text,col,term,why",
    [
        ("drop tcp", 1, "drop", "expected an action"),
        ("deny tcp from 10.0.0.1/24", 15, "10.0.0.1/24", "host bits set; the network is 10.0.0.0/24"),
        ("deny tcp from 10.0.0.0/33", 15, "10.0.0.0/33", "not an address"),
        ("deny from 10.0.0.0/8 to 2001:db8::/32", 25, "2001:db8::/32", "mix IPv4 and IPv6"),
        ("deny to any port 80", None, "80", "needs the protocol tcp or udp"),
        ("deny tcp to any port 0", None, "0", "ports are 1-65535"),
        ("deny tcp to any port 90-80", None, "90-80", "empty range"),
        ("deny tcp to any port 65536", None, "65536", "ports are 1-65535"),
        ("deny tcp port 80", 10, "port", "belongs to a from or to clause"),
        ("deny tcp udp", 10, "udp", "protocol given twice (first at column 6)"),
        ("deny tcp ttl 0s", 14, "0s", "between 1s and 30d"),
        ("deny tcp ttl 31d", 14, "31d", "between 1s and 30d"),
        ("deny tcp ttl soon", 14, "soon", "not a duration"),
        ('deny tcp "open', 10, '"open', "unterminated comment"),
        ("deny tcp from", 14, "from", "found the end of the line"),
        ("deny on a/b", 9, "a/b", "not an interface name"),
        ("deny tcp sideways", 10, "sideways", "unknown term"),
        ("deny tcp \x1b[31m", 10, "\\x1b", "control character"),
    ],
)
def test_errors_point_at_the_term(text, col, term, why):
    with pytest.raises(RuleError) as info:
        parse_rule(text, line=7)
    err = info.value
    assert (err.line, err.col, err.term) == (7, col if col else text.rindex(term) + 1, term)
    assert why in err.reason
    assert str(err).startswith(f"line 7:{err.col}: {term!r}: ")


def test_parse_text_collects_every_error_and_skips_comments():
    rules, errors = parse_text("# header\n\ncount tcp\nfoo\ndeny udp to any port 99999\nallow # trailing\n")
    assert [(n, r.action) for n, r in rules] == [(3, "count"), (6, "allow")]
    assert [(e.line, e.col) for e in errors] == [(4, 1), (5, 22)]


def test_canonical_text_round_trips():
    for text in (
        'deny tcp from 203.0.113.0/24 to any port 6379 on eth0 in ttl 15m "scraper"',
        "allow udp from any port 53 to 2001:db8::/32 port 1000-2000 out ttl 1h30m",
        "count icmp on lo",
    ):
        r = parse_rule(text)
        again = parse_rule(format_rule(r))
        assert again == r


_words = st.sampled_from(
    [
        "deny",
        "allow",
        "count",
        "tcp",
        "udp",
        "icmp",
        "any",
        "from",
        "to",
        "port",
        "on",
        "in",
        "out",
        "ttl",
        "15m",
        "80",
        "1-2",
        "10.0.0.0/8",
        "::1",
        '"c"',
        '"',
        "#",
        "-",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_words, max_size=12).map(" ".join)))
def test_arbitrary_input_never_crashes_and_errors_have_positions(text):
    for line in text.splitlines() or [text]:
        try:
            rule = parse_rule(line, line=3)
        except RuleError as err:
            assert err.line == 3
            assert 1 <= err.col <= len(line) + 1
            assert err.reason
        else:
            if rule is not None:
                assert parse_rule(format_rule(rule)) == rule


def test_check_verb(tmp_path):
    good = tmp_path / "good.rules"
    good.write_text("deny tcp to any port 22\ncount\n")
    bad = tmp_path / "bad.rules"
    bad.write_text("deny tcp to any port 22\ndeny tcp to any port 70000\n")
    cmd = [sys.executable, "-m", "ebpftop.cli.main", "rules", "check"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "2 rules, nothing applied" in ok.stdout
    no = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert no.returncode == 2
    assert f"{bad}:2:22: '70000': port out of range" in no.stderr
    piped = subprocess.run([*cmd, "-"], input="allow\nnope\n", capture_output=True, text=True)
    assert piped.returncode == 2 and "<stdin>:2:1: 'nope'" in piped.stderr
