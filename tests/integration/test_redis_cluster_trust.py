"""Whom a Redis Cluster's replies may send the gateway to (issue 21, item 15;
SPEC 3.2: what comes back from Redis is untrusted, 7.4): a connection, and
the password with it, only ever goes to an address the cluster's map names
(the seed, and what CLUSTER SLOTS asked of a node of the map answers).  A
MOVED or ASK to an address the map does not know makes the gateway read
the map again, and is followed only if the new map names it.  Nodes the map
stops naming are closed and make room, so a worker follows a cluster whose
addresses keep changing, past the 64 nodes it holds at a time.

Scripted fakes stand in for the nodes (harness/fake_redis.py): a real
redis-server never answers MOVED to an address of the test's choice."""

import time

import pytest
import requests

from harness.fake_redis import FakeRedis, array, cluster_slots, error
from test_redis import wait_for

PASSWORD = "s3cret-cluster-pw"

HTTP = """
    ai_gateway_redis 127.0.0.1:{seed} cluster password={password}
                     timeout=500ms connect_timeout=1s;
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /c/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /raw/ {{ return 200 "answer"; }}
    }}
"""

KEY_COMMANDS = (b"HMGET", b"HSET", b"EXPIRE", b"PTTL")


class Node(FakeRedis):
    """A cluster node: answers CLUSTER SLOTS with `slots` (a callable), and
    key commands with MOVED to `moved_to` (a port) when set."""

    def __init__(self, slots=None):
        self.slots = slots
        self.moved_to = None
        super().__init__(self.reply)

    def reply(self, args, conn):
        name = args[0].upper()
        if name == b"CLUSTER" and len(args) > 1 \
                and args[1].upper() == b"SLOTS":
            return self.slots() if self.slots else array([])
        if self.moved_to and name in KEY_COMMANDS:
            return error("MOVED 1234 127.0.0.1:%d" % self.moved_to)
        return self.default(args, conn)

    def key_commands(self):
        return [n for n in self.names() if n.encode() in KEY_COMMANDS]


@pytest.fixture
def fakes():
    made = []

    def make(**kw):
        node = Node(**kw)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def start(nginx_factory, seed):
    n = nginx_factory(HTTP.format(seed=seed.port, password=PASSWORD))
    wait_for(lambda: requests.get(n.url + "/cachez", timeout=5)
             .json()["redis"]["connected"], 10, "the seed")
    return n


def get(n, path):
    r = requests.get(n.url + path, timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


def test_a_moved_to_an_unknown_address_gets_no_password(nginx_factory,
                                                        fakes):
    rogue = fakes()
    seed = fakes()
    seed.slots = lambda: cluster_slots((0, 16383, seed.port))
    n = start(nginx_factory, seed)
    wait_for(lambda: "CLUSTER" in seed.names(), 5, "the map read")
    n.skip_alerts.append("not in the cluster's map")

    # the seed (the map's only node) answers every key with MOVED to rogue
    seed.moved_to = rogue.port
    r = get(n, "/c/x")
    assert r.headers["X-Cache"] == "MISS" and r.text == "answer"

    # the map was read again, from the seed, and does not name rogue
    time.sleep(0.3)
    assert seed.names().count("CLUSTER") >= 2, seed.names()
    # before: a connection to rogue, its first command AUTH <password>
    assert rogue.accepted == 0, rogue.commands
    assert rogue.commands == []
    assert "not followed: not in the cluster's map" in n.log()


def test_a_moved_to_an_address_the_new_map_names_is_followed(nginx_factory,
                                                             fakes):
    seed = fakes()
    other = fakes()
    owner = {"port": None}
    seed.slots = lambda: cluster_slots((0, 16383, owner["port"] or seed.port))
    n = start(nginx_factory, seed)
    wait_for(lambda: "CLUSTER" in seed.names(), 5, "the map read")

    # the slot moved to a node the map learns of only when read again
    owner["port"] = other.port
    seed.moved_to = other.port
    assert get(n, "/c/y").headers["X-Cache"] == "MISS"

    names = other.names()
    assert names[:2] == ["AUTH", "PING"], names       # the handshake
    assert other.commands[0][1] == PASSWORD.encode()
    assert "HMGET" in names, names                   # the lookup, followed
    z = requests.get(n.url + "/cachez", timeout=5).json()
    assert z["caches"]["redis"]["errors"] == 0, z


def test_nodes_that_leave_the_map_are_closed_and_make_room(nginx_factory,
                                                           fakes):
    """70 moves, each to a node on a new port (more than the 64 nodes a
    worker holds): each new node is reached, each old one closed."""
    current = {"node": None}
    seed = fakes()
    seed.slots = lambda: cluster_slots((0, 16383, current["node"].port))
    first = fakes()
    current["node"] = first
    n = start(nginx_factory, seed)
    wait_for(lambda: first.accepted == 1, 5, "the first node")

    previous = first
    for i in range(70):
        nxt = fakes()
        current["node"] = nxt
        previous.moved_to = nxt.port
        r = get(n, "/c/churn%d" % i)
        assert r.headers["X-Cache"] == "MISS"
        # before: past 64 nodes, no connection to the new one
        assert "HMGET" in nxt.key_commands(), (i, nxt.names())
        wait_for(lambda: previous.open_connections() == 0, 5,
                 "node %d to be closed" % i)
        previous.stop()
        previous = nxt

    assert "more than 64 cluster nodes" not in n.log()
    assert seed.open_connections() == 1, "the seed stays"
