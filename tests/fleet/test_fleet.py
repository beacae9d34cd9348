"""The fleet of docs/fleet.md under load: a rolling deploy, a node killed, load-aware
balancing, the cluster chat over Redis, and the metrics summed over the fleet.

Every reply is checked by its sequence number; every figure a test measures is printed (run
with ``-s`` to see them) for docs/fleet.md.
"""

from __future__ import annotations

import signal
import time

import pytest
from fleet_support import (
    CLIENTS,
    EXAMPLES,
    FALL,
    INTER,
    LONG,
    ChatClient,
    Load,
    percentile,
)
from helpers import poll
from master_support import ask

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(300 if LONG else 120)]

#: Seconds of steady load before and after the events a test makes.
PHASE = 10.0 if LONG else 2.0


def start_fleet(nodes, haproxy, **env):
    for node in nodes:
        node.start(**env)
    proxy = haproxy()
    proxy.wait_up([n.name for n in nodes])
    return proxy


def test_metrics_across_the_fleet_sum_to_the_connections_made(nodes, haproxy):
    proxy = start_fleet(nodes, haproxy)
    load = Load(proxy.frontend, clients=8, churn=True)
    time.sleep(PHASE)  # the load's duration, not synchronisation
    outcome = load.stop()
    assert outcome.wrong == [] and outcome.refused == 0 and outcome.resets == 0
    assert outcome.lost == 0
    made = outcome.connects
    assert made > 50

    def summed() -> float:
        return sum(n.metric("greensrv_connections_accepted_total") for n in nodes)
    poll(f"the fleet's accepted total to reach the {made} connections made",
         lambda: summed() == made)
    stot = sum(int(row["stot"]) for row in proxy.servers().values())
    assert stot == made  # HAProxy agrees: its health checks go to the admin port, not counted
    shares = {n.name: n.metric("greensrv_connections_accepted_total") for n in nodes}
    assert all(shares.values()), shares  # leastconn used every node
    print(f"\nmetrics: {made} connections through HAProxy, per node {shares}")


def test_a_rolling_deploy_under_load_loses_nothing(nodes, haproxy):
    proxy = start_fleet(nodes, haproxy)
    load = Load(proxy.frontend)
    time.sleep(PHASE)  # steady state under load, not synchronisation
    steady = [r[1] for r in load.replies_since(0)]
    drain_seen: dict[str, float] = {}
    deploy_began = time.monotonic()
    for node in nodes:
        node.master.signal(signal.SIGTERM)  # drain, then the graceful stop
        drain_seen[node.name] = poll(
            f"HAProxy to see {node.name} drain",
            lambda node=node: proxy.servers()[node.name]["status"].startswith(("DRAIN", "DOWN"))
            and time.monotonic(), interval=0.01)
        assert node.master.wait_exit() == 0
        node.start(version="v2")
        proxy.wait_up([node.name])
    deploy_ended = time.monotonic()
    time.sleep(PHASE)  # steady state on the new code, not synchronisation
    outcome = load.stop()

    assert outcome.wrong == []
    assert (outcome.refused, outcome.resets, outcome.lost) == (0, 0, 0), outcome
    assert outcome.graceful_eofs >= CLIENTS // 3  # the first node's clients at least moved
    late = [(t, node, v) for t, node, v in outcome.connections
            if v == "v1" and t > drain_seen[node]]
    assert late == [], f"connections to a node after HAProxy saw it drain: {late}"
    after = [r for r in outcome.replies if r[0] > deploy_ended]
    assert after and {r[2] for r in after} == {"v2"}
    # The long-lived clients stay where they are: the node restarted last gets new ones.
    fresh = [ask(proxy.frontend, f"fresh-{i}").split() for i in range(3)]
    assert {reply[0] for reply in fresh} == {"v2"}
    assert nodes[-1].name in {reply[1] for reply in fresh}
    during = [r[1] for r in outcome.replies if deploy_began <= r[0] <= deploy_ended]
    print(f"\nrolling deploy: {len(outcome.replies)} replies, {outcome.graceful_eofs} graceful "
          f"EOFs, {outcome.resends} resends, deploy {deploy_ended - deploy_began:.1f} s; "
          f"p99 steady {percentile(steady, 0.99) * 1000:.1f} ms, during the deploy "
          f"{percentile(during, 0.99) * 1000:.1f} ms (max {max(during) * 1000:.1f} ms)")


def test_a_node_killed_is_taken_out_within_inter_times_fall_and_comes_back(nodes, haproxy):
    proxy = start_fleet(nodes, haproxy)
    load = Load(proxy.frontend)
    time.sleep(PHASE)  # steady load, not synchronisation
    victim = nodes[1]
    before = proxy.servers()[victim.name]
    killed_at = time.monotonic()
    victim.kill()
    down_at = poll(f"HAProxy to mark {victim.name} DOWN",
                   lambda: proxy.servers()[victim.name]["status"] == "DOWN" and time.monotonic(),
                   interval=0.01)
    # Its connections at the kill, and those HAProxy sent it before it saw it down.
    held = int(before["scur"])
    reached = held + int(proxy.servers()[victim.name]["stot"]) - int(before["stot"])
    took = down_at - killed_at
    # The first failing check comes at most one interval after the kill, then FALL - 1 more;
    # a tenth of a second covers the stats socket's polling on a loaded machine.
    assert took <= INTER * FALL + 0.1, f"marked down {took:.2f} s after the kill"
    newcomers = [ask(proxy.frontend, f"new-{i}").split()[1] for i in range(6)]
    assert victim.name not in newcomers
    victim.start()
    proxy.wait_up([victim.name])
    back = [ask(proxy.frontend, f"back-{i}").split()[1] for i in range(3)]
    assert victim.name in back  # leastconn: the node with no connections gets the newcomers
    outcome = load.stop()

    assert outcome.wrong == [] and outcome.refused == 0
    # Only what was in flight on the dead node is lost: each trouble (a reset, or an EOF that
    # made the client resend) is a request on one of the connections that reached it. A request
    # counted lost met two of them (its resend raced the death), and is counted twice above.
    troubled = outcome.resets + outcome.resends - outcome.lost
    assert troubled <= reached, (outcome, held, reached)
    print(f"\nkill: {victim.name} held {held} connections ({reached} reached it before it was "
          f"seen down), marked DOWN {took * 1000:.0f} ms after SIGKILL (inter "
          f"{INTER * 1000:.0f} ms x fall {FALL}); {outcome.resets} resets, {outcome.resends} "
          f"resends, {outcome.lost} requests abandoned after a second failure")


def test_a_slowed_node_at_its_limit_gets_a_smaller_share_of_new_clients(nodes, haproxy):
    """Node 3 answers slowly and has little capacity: the agent's weight (its free share)
    falls as it fills, and HAProxy sends it fewer newcomers than the others."""
    limit = ("--concurrency", "10")
    for node in nodes[:2]:
        node.start("v1", "fleetapp:handler", *limit)
    nodes[2].start("v1", "fleetapp:handler", *limit, FLEET_SLOW="0.2")
    proxy = haproxy()
    proxy.wait_up([n.name for n in nodes])
    load = Load(proxy.frontend, clients=CLIENTS, churn=True, pace=0.0)
    weights: list[int] = []
    deadline = time.monotonic() + PHASE * 2
    while time.monotonic() < deadline:
        weights.append(int(proxy.servers()[nodes[2].name]["weight"]))
        time.sleep(0.05)  # sampling HAProxy's view, not synchronisation
    outcome = load.stop()
    assert outcome.wrong == [] and outcome.refused == 0 and outcome.resets == 0
    shares = {n.name: sum(1 for c in outcome.connections if c[1] == n.name) for n in nodes}
    total = sum(shares.values())
    assert total > 30
    assert shares[nodes[2].name] < min(shares[nodes[0].name], shares[nodes[1].name]), shares
    print(f"\nshares of {total} new connections: "
          + ", ".join(f"{k} {v / total:.0%}" for k, v in shares.items())
          + f"; the slowed node's agent weight ranged {min(weights)}..{max(weights)}")


def test_the_cluster_chat_reaches_every_client_across_nodes_and_a_redis_restart(
        nodes, haproxy, redis):
    for node in nodes:
        node.start("v1", f"{EXAMPLES / 'chat_cluster.py'}:server", REDIS_URL=redis.url)
    proxy = haproxy()
    proxy.wait_up([n.name for n in nodes])
    clients = [ChatClient(proxy.frontend) for _ in range(12)]
    try:
        for client in clients:
            client.wait_for("the welcome", lambda lines, c=client: f"Welcome, {c.nick}." in lines)
        poll("every node's clients on /metrics", lambda: [
            n.metric("greensrv_connections") for n in nodes] == [4.0, 4.0, 4.0])
        workers = redis.subscribers("greensrv-chat")
        assert workers > len(nodes)  # some node has clients on both of its workers

        def everyone_hears(tag: str, count: int) -> None:
            for sender in clients:
                for k in range(count):
                    sender.send(f"{tag}-{k}")
            want = [f"{tag}-{k}" for k in range(count)]
            for receiver in clients:
                for sender in clients:
                    if sender is receiver:
                        continue
                    receiver.wait_for(f"{sender.nick}'s {tag} lines", lambda lines, s=sender: (
                        sum(1 for line in lines if line.startswith(f"<{s.nick}> {tag}-"))
                        >= count))
                    got = [m for _, m in receiver.messages_from(sender.nick)
                           if m.startswith(f"{tag}-")]
                    assert got == want, (receiver.nick, sender.nick, got)  # all, in order
                assert not any(m.startswith(f"{tag}-") for _, m in
                               receiver.messages_from(receiver.nick))  # never its own

        everyone_hears("before", 10)

        # Redis restarts while one client keeps talking: what is lost is one contiguous window.
        ticker, listener = clients[0], clients[1]
        ticks = 0
        stopped_at = time.monotonic()
        redis.stop()
        redis.start()
        while redis.subscribers("greensrv-chat") < workers:
            ticker.send(f"tick-{ticks}")
            ticks += 1
            time.sleep(0.02)  # the ticker's pace, not synchronisation
            assert time.monotonic() - stopped_at < 30, "the workers did not resubscribe"
        resubscribed_at = time.monotonic()
        for _ in range(10):
            ticker.send(f"tick-{ticks}")
            ticks += 1
        listener.wait_for("the ticks after the restart",
                          lambda lines: f"<{ticker.nick}> tick-{ticks - 1}" in lines)
        heard = [int(m.split("-")[1]) for _, m in listener.messages_from(ticker.nick)
                 if m.startswith("tick-")]
        assert heard == sorted(heard)
        assert heard[-10:] == list(range(ticks - 10, ticks))  # all delivered once resubscribed
        lost = ticks - len(heard)

        everyone_hears("after", 10)
        print(f"\nchat: 12 clients, {workers} workers subscribed over 3 nodes; Redis restart: "
              f"{lost} of {ticks} ticks lost, subscribers back "
              f"{resubscribed_at - stopped_at:.2f} s after the stop")
    finally:
        for client in clients:
            client.close()
