"""Snapshots are data: they round-trip through JSON exactly, and bad JSON says where."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ebpftop.core import model
from ebpftop.core.codec import DecodeError, from_jsonable, to_jsonable
from ebpftop.core.model import Health, HealthState, HostData, NicRate, Snapshot


def host(**kw) -> HostData:
    base = dict(
        hostname="node-1",
        kernel="6.18",
        uptime_s=12.5,
        cpu_percent=3.25,
        cpu_count=2,
        load=(0.1, 0.2, 0.3),
        mem_total=1 << 34,
        mem_used=1 << 30,
        mem_percent=6.25,
        net_rx_bps=100.0,
        net_tx_bps=None,
        nics=(NicRate("eth0", 100.0, 0.0),),
    )
    base.update(kw)
    return HostData(**base)


def test_host_snapshot_round_trips_exactly():
    snap = Snapshot(
        "host", 7, 1700000000.5, Health(HealthState.DEGRADED, "slow", "", 1699999999.0, 2), host()
    )
    text = model.to_json(snap)
    back = model.from_json(text)
    assert back == snap
    assert isinstance(back.data, HostData) and isinstance(back.data.nics[0], NicRate)
    assert back.health.state is HealthState.DEGRADED


def test_nan_and_inf_become_null_never_zero():
    snap = Snapshot("host", 1, 1.0, Health(), host(cpu_percent=math.nan, net_rx_bps=math.inf))
    obj = json.loads(model.to_json(snap))
    assert obj["data"]["cpu_percent"] is None
    assert obj["data"]["net_rx_bps"] is None


def test_unknown_source_keeps_raw_data():
    obj = {"source": "future", "seq": 1, "time": 2.0, "health": {"state": "ok"}, "data": {"x": [1, 2]}}
    snap = model.snapshot_from_dict(obj)
    assert snap.data == {"x": [1, 2]}


@pytest.mark.parametrize(
    "mutate, path",
    [
        (lambda o: o["data"].update(cpu_percent="high"), ".data.cpu_percent"),
        (lambda o: o["data"].pop("hostname"), ".data.hostname"),
        (lambda o: o["data"].update(load=[1.0, 2.0]), ".data.load"),
        (lambda o: o["health"].update(state="melting"), ".health.state"),
        (lambda o: o["data"]["nics"][0].update(up="yes"), ".data.nics[0].up"),
    ],
)
def test_decode_errors_name_the_path(mutate, path):
    obj = json.loads(model.to_json(Snapshot("host", 1, 1.0, Health(), host())))
    mutate(obj)
    with pytest.raises(DecodeError) as err:
        model.snapshot_from_dict(obj)
    assert err.value.path == path


def test_not_json_is_a_decode_error():
    with pytest.raises(DecodeError):
        model.from_json('{"source": "host", ')


@dataclass(frozen=True)
class Inner:
    a: int
    b: str | None = None


@dataclass(frozen=True)
class Outer:
    items: tuple[Inner, ...]
    by_name: dict[str, float]
    maybe: Inner | None = None


@given(
    st.builds(
        Outer,
        items=st.lists(st.builds(Inner, a=st.integers(), b=st.none() | st.text()), max_size=5).map(tuple),
        by_name=st.dictionaries(st.text(), st.floats(allow_nan=False, allow_infinity=False)),
        maybe=st.none() | st.builds(Inner, a=st.integers()),
    )
)
def test_codec_round_trips_nested_dataclasses(value):
    assert from_jsonable(Outer, json.loads(json.dumps(to_jsonable(value)))) == value


@pytest.mark.parametrize(
    "value, path, reason",
    [
        (
            {"items": [{"a": 1}, {"a": 2}, {"a": "3"}], "by_name": {}},
            ".items[2].a",
            "expected an integer, got str",
        ),
        ({"items": [], "by_name": {"x": 1.0, "y": "z"}}, ".by_name.y", "expected a number, got str"),
        ({"items": [], "by_name": {}, "maybe": {"a": True}}, ".maybe", "expected an integer, got bool"),
        ({"items": [{"b": None}], "by_name": {}}, ".items[0].a", "missing"),
        ({"items": {}, "by_name": {}}, ".items", "expected a list, got dict"),
    ],
)
def test_nested_decode_errors_name_the_path_and_the_reason(value, path, reason):
    """The decoders are built once per type; what a failure says is as before: where, and why."""
    with pytest.raises(DecodeError) as err:
        from_jsonable(Outer, value, ".data")
    assert (err.value.path, err.value.reason) == (".data" + path, reason)
    assert str(err.value) == f".data{path}: {reason}"


@dataclass(frozen=True)
class Node:
    name: str
    children: tuple[Node, ...] = ()


def test_a_dataclass_that_holds_itself_decodes():
    tree = Node("root", (Node("a", (Node("a1"),)), Node("b")))
    assert from_jsonable(Node, json.loads(json.dumps(to_jsonable(tree)))) == tree
    with pytest.raises(DecodeError) as err:
        from_jsonable(Node, {"name": "root", "children": [{"name": "a", "children": [{"name": 7}]}]})
    assert err.value.path == ".children[0].children[0].name"
