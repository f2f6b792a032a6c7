"""The mock network from Python: partitions, seeded faults, holds, the trace."""

from __future__ import annotations

import gc
import json
import threading
import warnings

import pytest

import cluster
from cluster import Envelope, MockCluster
from conftest import make_config, recv_all, wait_until


def three() -> dict:
    return make_config([1, 2, 3])


def exchange(a: cluster.Node, b: cluster.Node) -> list:
    """The same code for real nodes and mock servers: a request and its reply."""
    a.send(b.pid, {"q": 1}, msg_id=11)
    req = b.recv(10)
    b.outbox.put(req._replace(msg={"a": req.msg["q"] + 1}))
    rep = a.inbox.get(10)
    return [req.pid, rep.pid, rep.msg_id, rep.msg]


def test_same_code_runs_against_real_nodes_and_the_mock(nodes):
    a, b = nodes([1, 2])
    with MockCluster(make_config([1, 2])) as mock:
        m1, m2 = mock.servers[1], mock.servers[2]
        assert exchange(a, b) == exchange(m1, m2) == [1, 2, 11, {"a": 2}]
        assert m1.stats()["transport"] == "mock"


def test_servers_from_config_and_added_later():
    with MockCluster(three(), seed=1) as mock:
        assert sorted(mock.servers) == [1, 2, 3]
        s4 = mock.add_server(4)
        assert mock.add_server(4) is s4  # open already: the same server
        assert sorted(mock.servers) == [1, 2, 3, 4]
        assert mock.servers[1].peers == [2, 3, 4]
        assert isinstance(s4, cluster.MockServer)
        s4.send(1, b"hi")
        assert mock.servers[1].recv(5) == Envelope(4, 0, b"hi", 0)
        seen = []
        mock.for_all(lambda s: seen.append(s.pid))
        assert sorted(seen) == [1, 2, 3, 4]


def test_empty_mock_and_unknown_peer():
    with MockCluster() as mock:
        assert mock.servers == {}
        a = mock.add_server(7)
        with pytest.raises(cluster.UnknownPeer):
            a.send(8, b"x")
        a.send(7, "self")
        assert a.recv(5).msg == "self"
        with pytest.raises(cluster.InvalidArgument):
            mock.add_server(cluster.BROADCAST)


def test_partition_and_heal():
    with MockCluster(three()) as mock:
        s1, s2, s3 = (mock.servers[i] for i in (1, 2, 3))
        mock.partition([1])  # 2 and 3, not named, form the other group
        s1.send(2, "lost")
        s2.send(3, "kept")
        s3.send(1, "lost too")
        assert s3.recv(5).msg == "kept"
        assert recv_all(s2) == [] and recv_all(s1) == []
        assert s1.stats()["dropped"]["fault"] == 1
        mock.heal()
        s1.send(2, "after heal")
        assert s2.recv(5).msg == "after heal"
        mock.partition([1, 2], [3])
        s1.broadcast("to my group")
        assert s2.recv(5).msg == "to my group"
        assert recv_all(s3) == []
        with pytest.raises(cluster.InvalidArgument):
            mock.partition([1, 2], [2, 3])


def delivered_with_drops(seed: int) -> list:
    with MockCluster(make_config([1, 2], InboxSize=2000), seed=seed) as mock:
        a, b = mock.servers[1], mock.servers[2]
        a.set_drop_probability(0.5)
        for i in range(1000):
            a.send(2, b"m", msg_id=i)
        got = [e.msg_id for e in recv_all(b, 0.1)]
        assert len(got) + a.stats()["dropped"]["fault"] == 1000
        return got


def test_drop_probability_is_seeded_and_replayable():
    first = delivered_with_drops(seed=42)
    assert 300 < len(first) < 700
    assert first == sorted(first)  # what survives keeps its order
    assert delivered_with_drops(seed=42) == first
    assert delivered_with_drops(seed=43) != first


def test_max_delay_reorders_but_delivers_everything():
    with MockCluster(make_config([1, 2]), seed=5) as mock:
        a, b = mock.servers[1], mock.servers[2]
        a.set_max_delay(30)
        for i in range(200):
            a.send(2, i, msg_id=i)
        got = []
        while len(got) < 200:
            got.append(b.recv(10).msg_id)
        assert sorted(got) == list(range(200))
        assert got != list(range(200))
        a.set_max_delay(0)
        for i in range(50):
            a.send(2, i, msg_id=i)
        assert [b.recv(10).msg_id for _ in range(50)] == list(range(50))


def test_duplicate_probability():
    with MockCluster(make_config([1, 2])) as mock:
        a, b = mock.servers[1], mock.servers[2]
        a.set_duplicate_probability(1.0)
        for i in range(5):
            a.send(2, i, msg_id=i)
        got = sorted(e.msg_id for e in recv_all(b))
        assert got == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_one_way_cut():
    with MockCluster(three()) as mock:
        s1, s2, s3 = (mock.servers[i] for i in (1, 2, 3))
        s1.cut(2, direction="out")
        s1.send(2, "lost")
        s2.send(1, "arrives")
        s1.send(3, "arrives too")
        assert s1.recv(5).msg == "arrives"
        assert s3.recv(5).msg == "arrives too"
        assert recv_all(s2) == []
        s3.cut([1], direction=cluster.CUT_IN)
        s1.send(3, "cut in")
        assert recv_all(s3) == []
        s1.heal()
        s3.heal()
        s1.send(2, "healed")
        assert s2.recv(5).msg == "healed"


def test_hold_and_release_in_order_and_shuffled():
    with MockCluster(make_config([1, 2]), seed=9) as mock:
        a, b = mock.servers[1], mock.servers[2]
        mock.hold(1, 2)
        for i in range(20):
            a.send(2, i, msg_id=i)
        assert recv_all(b, 0.1) == []
        mock.release(1, 2)
        assert [b.recv(5).msg_id for _ in range(20)] == list(range(20))
        mock.hold(1, 2)
        for i in range(20):
            a.send(2, i, msg_id=i)
        mock.release(1, 2, shuffle=True)
        got = [b.recv(5).msg_id for _ in range(20)]
        assert sorted(got) == list(range(20)) and got != list(range(20))


def test_trace_records_each_fate():
    with MockCluster(make_config([1, 2])) as mock:
        a, b = mock.servers[1], mock.servers[2]
        mock.trace(True)
        a.send(2, b"ok", msg_id=1)
        b.recv(5)
        mock.partition([1])
        a.send(2, b"dropped", msg_id=2)
        events = mock.take_trace()
        assert {"event": "delivered", "msg_id": 1} .items() <= [e for e in events if e["event"] == "delivered"][0].items()
        dropped = [e for e in events if e["event"] == "dropped_fault"]
        assert len(dropped) == 1 and dropped[0]["msg_id"] == 2 and dropped[0]["from"] == 1
        assert mock.take_trace() == []  # taken means cleared
        mock.trace(False)
        a.send(2, b"x")
        assert mock.take_trace() == []


def test_close_a_server_and_add_it_again():
    with MockCluster(make_config([1, 2])) as mock:
        a, b = mock.servers[1], mock.servers[2]
        a.send(2, "before")
        b.close()
        assert b.closed and sorted(mock.servers) == [1]
        with pytest.raises(cluster.Closed):
            b.recv(0)
        with pytest.raises(cluster.UnknownPeer):
            a.send(2, "nobody")
        b2 = mock.add_server(2)
        assert b2 is not b and not b2.closed
        assert recv_all(b2, 0.1) == []  # a fresh, empty inbox
        a.send(2, "after")
        assert b2.recv(5).msg == "after"
        del b  # freeing the old handle leaves the new server alone
        gc.collect()
        a.send(2, "still")
        assert b2.recv(5).msg == "still" and not b2.closed


def test_concurrent_add_server_gives_one_node():
    with MockCluster() as mock:
        got = []
        ts = [threading.Thread(target=lambda: got.append(mock.add_server(9))) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert len(got) == 8 and all(n is got[0] for n in got)


def test_closing_the_mock_closes_servers_and_wakes_receivers():
    mock = MockCluster(make_config([1, 2]))
    a = mock.servers[1]
    got = []

    def receive():
        for e in a:  # iterates until closed
            got.append(e.msg)

    t = threading.Thread(target=receive)
    t.start()
    mock.servers[2].send(1, "one")
    wait_until(lambda: got == ["one"], what="delivery")
    mock.close()
    mock.close()
    t.join(10)
    assert not t.is_alive() and got == ["one"]
    assert a.closed
    with pytest.raises(cluster.Closed):
        mock.add_server(3)
    with pytest.raises(cluster.Closed):
        a.send(2, "x")


def test_an_unclosed_mock_warns_when_collected():
    mock = MockCluster(make_config([1]))
    server = mock.servers[1]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del mock
        gc.collect()
    assert any(issubclass(x.category, ResourceWarning) for x in w)
    assert server.closed


def test_bad_mock_config():
    with pytest.raises(cluster.ConfigError):
        MockCluster('{"Peers": 5}')
    with pytest.raises(cluster.ConfigError, match=r'Peers\[0\]: unknown field "Adress" \(did you mean "Address"\?\)'):
        MockCluster({"Peers": [{"Id": 1, "Adress": "localhost:1"}]})
    with pytest.raises(cluster.ConfigError, match='did you mean "OutboxSize"'):
        MockCluster({"OutboxSise": 5})


def test_mock_peers_need_no_address_and_no_dns(tmp_path):
    """The mock ignores addresses, as the Go mock does: they may be left out,
    and are not resolved (`.invalid` never resolves; a lookup would fail)."""
    cfg = {"Peers": [{"Id": 1}, {"Id": 2, "Address": "no-such-host.invalid:1"}], "InboxSize": 5}
    path = tmp_path / "mock.json"
    path.write_text(json.dumps(cfg))
    for form in (cfg, json.dumps(cfg), path):
        with MockCluster(form) as mock:
            assert sorted(mock.servers) == [1, 2]
            mock.servers[1].send(2, b"hi")
            assert mock.servers[2].recv(5).msg == b"hi"
    with pytest.raises(cluster.ConfigError, match='duplicate "Id" 1'):
        MockCluster({"Peers": [{"Id": 1}, {"Id": 1}]})
