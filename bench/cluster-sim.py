#!/usr/bin/env python3
"""A discrete-event simulation of nimbus nodes past one machine.

Written for docs/design/005-cluster-beyond-one-rack.md, which holds its results.

No machines were at hand, so this models them. It is a model, not a measurement: every
cost below is a stated number with its source, and the results are only as good as those.

What it models
- N nodes in R regions; each region's clients reach a load balancer that picks one of the
  region's live nodes at random (the "entry" node).
- F functions with Zipf popularity (s = 1); requests arrive as a Poisson process.
- Each node holds at most MAX_INSTANCES instances (memory) and runs at most SLOTS at once
  (CPU); an idle instance is reaped after KEEP_ALIVE; a cold start evicts the least
  recently used idle instance when the node is full. Past SLOTS a request waits its turn.
- Routing policies, applied at the entry node:
    random   run where the load balancer sent it (no forward).
    hash     rendezvous hash of the function over the region's live nodes; forward there.
    warm-ll  run locally if an idle instance is here; else forward to the least loaded node
             of the region holding an instance of the function; else start one locally
             (or on the least loaded node when this one has no free slot).
- Added latency of a request = forwards x HOP + (cold start ? COLD : 0) + time waiting for a
  slot (+ CROSS_REGION when its region is down and it was sent to another region).
  The function's own run time is not "added" (it is the same under every policy).
- A queue consumed by every node (SQS semantics on a JetStream work-queue stream): each node
  has CONSUMER_SLOTS batches of up to 10 in flight; a delete (ack) reaches the server
  ACK_DELAY after the batch ends.
- Durable Objects: DO_IDS ids homed in a region; the owner is the region's node given by
  today's owner_of (first 64 bits modulo the live node count) or by rendezvous hashing.
- At KILL_AT one node is killed (kill -9 / machine loss); routers and the load balancer
  notice after DETECT. Counted: requests failed, cold starts per 1,000 requests served in
  the 60 s after the kill against the 60 s before, queue messages in flight (redelivered
  after ACK_WAIT),
  those whose ack was on the wire (duplicates), and Durable Objects whose owner changes.
- With 3 regions, a second run per policy loses a whole region at KILL_AT; its clients are
  sent to the other regions once DNS fails over (DNS_FAILOVER), paying CROSS_REGION.

Run: python3 bench/cluster-sim.py [--seed N] [--quick]
Standard library only; deterministic for a seed (no use of Python's salted str hash).
"""

import argparse
import bisect
import heapq
import math
import random
import sys
import time
from collections import OrderedDict

# ---- Modelled costs (ms) and their sources ---------------------------------------------
# One forward between two nodes of a region: a round trip inside a data centre, 0.5 ms
# ("Latency numbers every programmer should know", Jeff Dean; AWS inter-AZ pings measured
# 0.25-3.4 ms, xkyle.com/Measuring-AWS-Region-and-AZ-Latency), plus nimbus's own proxying,
# ~0.05 ms (BENCHMARKS.md: the loopback HTTP hop of `nimbus server` cost 40-50 us at p50).
HOP_MS = 0.55
# A cold start: nimbus's measured Node.js fresh-process cold start, 63 ms p50 (BENCHMARKS.md,
# "Cold starts and concurrency per instance"); a pre-started runtime cuts it to 18 ms.
COLD_MS = 63.0
# A request sent to another region: one cross-region round trip, ~80 ms (us-east-1 to
# eu-west-1 80.5 ms, us-east-1 to us-west-2 87 ms, averages from "Latency Between AWS Global
# Regions" as tabled at acomputerscientistlearnsaws.blogspot.com/2017/04/aws-regions.html; ?
# for today's figures).
CROSS_REGION_MS = 80.0

# ---- Workload and node shape (chosen, not measured) -------------------------------------
FUNCTIONS = 2000
ZIPF_S = 1.0                  # Azure's trace: invocation rates span 8 orders of magnitude
RATE_PER_NODE = 20.0          # HTTP requests/s per node
RUN_MEDIAN_MS = 120.0         # per-function median run time, lognormal sigma 1 across functions,
UTILISATION = 0.5             # then scaled so warm runs fill this share of the slots
SLOTS = 8                     # invocations running at once per node (its cores)
MAX_INSTANCES = 256           # instances per node, busy or idle (its memory: 64 GB at 256 MB)
KEEP_ALIVE_S = 60.0           # idle instance reaped after this (nimbus's default is 5 min;
                              # shortened so the runs reach steady state in seconds of CPU)
QUEUE_RATE_PER_NODE = 5.0     # queue messages/s per node, steady
QUEUE_RUN_MEDIAN_MS = 50.0
QUEUE_BURST_PER_NODE = 4000   # a backlog sent 1 s before the kill, still draining at it
CONSUMER_SLOTS = 4            # batches in flight per node
BATCH = 10
ACK_DELAY_MS = 0.25           # half an in-DC round trip: the delete on the wire
ACK_WAIT_S = 30.0             # visibility timeout = AckWait (SQS's default 30 s)
DO_IDS = 20000
DO_RATE_PER_NODE = 5.0        # Durable Object requests/s per node (for "active" objects)
QUEUE_WAIT_S = 1.0            # nimbus's --queue-wait: past it a waiting request gets 429
DETECT_S = 2.0                # node loss noticed by peers and the load balancer (assumed)
DNS_FAILOVER_S = 30.0         # a region's loss noticed by DNS health checks (assumed)

WARMUP_S = 60.0
KILL_AT_S = 180.0
END_S = 240.0
SWEEP_S = 5.0

CONFIGS = [(3, 1), (9, 1), (9, 3), (27, 3)]
POLICIES = ["random", "hash", "warm-ll"]

MASK = (1 << 64) - 1


def mix64(x):
    """splitmix64's finaliser: a fixed, fast 64-bit mix (stands in for a real hash)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def rendezvous(key, nodes):
    """The node with the highest mix of (key, node): only a lost node's keys move."""
    best, best_score = None, -1
    for n in nodes:
        score = mix64(key ^ mix64(n + 1))
        if score > best_score:
            best, best_score = n, score
    return best


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class Node:
    __slots__ = ("id", "region", "alive", "busy", "queue", "idle", "lru", "count",
                 "batches", "acked")

    def __init__(self, nid, region):
        self.id = nid
        self.region = region
        self.alive = True
        self.busy = 0
        self.queue = []          # requests waiting for a slot, oldest first
        self.idle = {}           # function -> idle instance ids, most recently used last
        self.lru = OrderedDict() # instance id -> (function, idle since), least recent first
        self.count = 0           # instances, busy or idle
        self.batches = {}        # batch id -> size, queue batches being run here
        self.acked = []          # (time the ack lands, size) of batches just finished


class Sim:
    def __init__(self, n_nodes, n_regions, policy, seed, scenario):
        self.policy = policy
        self.scenario = scenario  # "node" or "region"
        self.nodes = [Node(i, i % n_regions) for i in range(n_nodes)]
        self.n_regions = n_regions
        self.region_nodes = [[n.id for n in self.nodes if n.region == r] for r in range(n_regions)]
        # what routers and load balancers believe is alive (lags the truth by DETECT)
        self.routable = [list(ns) for ns in self.region_nodes]
        self.routable_set = [set(ns) for ns in self.region_nodes]
        self.prefs = [{} for _ in range(n_regions)]
        self.live = list(self.nodes)
        self.region_up = [True] * n_regions
        self.events = []
        self.seq = 0
        self.next_instance = 0
        self.directory = {}  # function -> {node: instance count}
        # independent random streams, so a kill changes only what follows it
        self.rng_arrival = random.Random(seed * 7 + 1)
        self.rng_fn = random.Random(seed * 7 + 2)
        self.rng_lb = random.Random(seed * 7 + 3)
        self.rng_run = random.Random(seed * 7 + 4)
        self.rng_queue = random.Random(seed * 7 + 5)
        fns = random.Random(seed)
        weights = [1.0 / (rank ** ZIPF_S) for rank in range(1, FUNCTIONS + 1)]
        total = sum(weights)
        acc, self.cum = 0.0, []
        for w in weights:
            acc += w / total
            self.cum.append(acc)
        medians = [RUN_MEDIAN_MS * math.exp(fns.gauss(0.0, 1.0)) for _ in range(FUNCTIONS)]
        # offered load: mean busy slots per node = rate x mean run (jitter's mean e^(0.3^2/2))
        jitter = math.exp(0.3 ** 2 / 2)
        prev, busy = 0.0, 0.0
        for f in range(FUNCTIONS):
            busy += (self.cum[f] - prev) * medians[f] * jitter / 1000.0
            prev = self.cum[f]
        scale = UTILISATION * SLOTS / (RATE_PER_NODE * busy)
        self.fn_median = [m * scale for m in medians]
        self.fn_key = [mix64(f * 0x1000193 + 17) for f in range(FUNCTIONS)]
        # statistics
        self.lat = []
        self.requests = self.warm = self.forwards = 0
        self.cold_before = self.cold_after = 0
        self.served_before = self.served_after = 0
        self.failed = 0
        self.rejected = 0
        self.rejected_after = 0
        self.rerouted_lat = []
        self.inst_samples = []
        self.queue_backlog = []
        self.queue_waiting = [0] * n_nodes  # free consumer slots per node
        self.next_batch = 0
        self.batch_node = {}
        self.redelivered = self.duplicates = 0
        self.killed = []
        self.rr = 0

    # ---- event queue ----------------------------------------------------------------
    def at(self, t, kind, data):
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, data))

    # ---- instances ------------------------------------------------------------------
    def dir_add(self, f, nid, d):
        entry = self.directory.setdefault(f, {})
        c = entry.get(nid, 0) + d
        if c > 0:
            entry[nid] = c
        else:
            entry.pop(nid, None)

    def drop_instance(self, node, iid, f):
        node.count -= 1
        self.dir_add(f, node.id, -1)

    def take_idle(self, node, f, now):
        lst = node.idle.get(f)
        while lst:
            iid = lst.pop()
            _, since = node.lru.pop(iid)
            if now - since <= KEEP_ALIVE_S:
                return iid
            self.drop_instance(node, iid, f)
        return None

    def evict_lru(self, node):
        iid, (f, _) = node.lru.popitem(last=False)
        node.idle[f].pop(0)
        self.drop_instance(node, iid, f)

    def sweep(self, now):
        total = 0
        for node in self.nodes:
            if not node.alive:
                continue
            while node.lru:
                iid, (f, since) = next(iter(node.lru.items()))
                if now - since <= KEEP_ALIVE_S:
                    break
                self.evict_lru(node)
            total += node.count
        live = sum(1 for n in self.nodes if n.alive)
        if WARMUP_S <= now < KILL_AT_S:
            self.inst_samples.append(total / max(live, 1))

    # ---- requests -------------------------------------------------------------------
    def start(self, node, f, arrived, forwards, extra, now):
        """Runs a request on node (a slot is free): warm or cold."""
        iid = self.take_idle(node, f, now)
        cold = iid is None
        if cold:
            if node.count >= MAX_INSTANCES and node.lru:
                self.evict_lru(node)
            iid = self.next_instance
            self.next_instance += 1
            node.count += 1
            self.dir_add(f, node.id, 1)
            if KILL_AT_S - 60.0 <= arrived < KILL_AT_S:
                self.cold_before += 1
            elif KILL_AT_S <= arrived < KILL_AT_S + 60.0:
                self.cold_after += 1
        if KILL_AT_S - 60.0 <= arrived < KILL_AT_S:
            self.served_before += 1
        elif KILL_AT_S <= arrived < KILL_AT_S + 60.0:
            self.served_after += 1
        node.busy += 1
        run = self.fn_median[f] * math.exp(self.rng_run.gauss(0.0, 0.3))
        added = forwards * HOP_MS + (COLD_MS if cold else 0.0) + (now - arrived) * 1000.0 + extra
        if WARMUP_S <= arrived < KILL_AT_S:
            self.requests += 1
            self.warm += 0 if cold else 1
            self.forwards += forwards
            self.lat.append(added)
        elif arrived >= KILL_AT_S and extra > 0.0:
            self.rerouted_lat.append(added)
        done = now + ((COLD_MS if cold else 0.0) + run) / 1000.0
        self.at(done, "done", (node.id, iid, f))

    def dispatch(self, node, f, arrived, forwards, extra, now):
        if node.busy < SLOTS:
            self.start(node, f, arrived, forwards, extra, now)
        else:
            node.queue.append((f, arrived, forwards, extra))

    def load(self, nid):
        n = self.nodes[nid]
        return n.busy + len(n.queue)

    def route(self, entry, f, region):
        """The node a request entering at `entry` runs on, and the forwards to get there."""
        nodes = self.routable[region]
        if self.policy == "random":
            return entry, 0
        if self.policy == "hash":
            target = self.hash_owner(f, region)
            return target, (0 if target == entry else 1)
        # warm-ll
        here = self.nodes[entry]
        lst = here.idle.get(f)
        if lst:
            return entry, 0
        holders = self.directory.get(f)
        best, best_load = None, None
        if holders:
            for nid in nodes:
                if nid in holders:
                    ld = self.load(nid)
                    if ld >= SLOTS:
                        continue  # busy: its instance would not be free anyway
                    if best is None or ld < best_load or (ld == best_load and nid == entry):
                        best, best_load = nid, ld
        if best is not None:
            return best, (0 if best == entry else 1)
        if here.busy < SLOTS:
            return entry, 0
        best = min(nodes, key=self.load)
        return best, (0 if best == entry else 1)

    def hash_owner(self, f, region):
        """Rendezvous owner of f among the region's routable nodes (preferences cached)."""
        prefs = self.prefs[region].get(f)
        if prefs is None:
            key = self.fn_key[f]
            prefs = sorted(self.region_nodes[region], key=lambda n: -mix64(key ^ mix64(n + 1)))
            self.prefs[region][f] = prefs
        routable = self.routable_set[region]
        for n in prefs:
            if n in routable:
                return n
        return prefs[0]

    def arrive(self, now, region):
        f = bisect.bisect_left(self.cum, self.rng_fn.random())
        if f >= FUNCTIONS:
            f = FUNCTIONS - 1
        extra = 0.0
        served = region
        if not self.region_up[region]:
            # DNS sends the region's clients elsewhere once it notices
            if now < KILL_AT_S + DNS_FAILOVER_S:
                self.failed += 1
                return
            ups = [r for r in range(self.n_regions) if self.region_up[r]]
            served = ups[self.rng_lb.randrange(len(ups))]
            extra = CROSS_REGION_MS
        nodes = self.routable[served]
        entry = nodes[self.rng_lb.randrange(len(nodes))]
        target, forwards = self.route(entry, f, served)
        if not self.nodes[entry].alive or not self.nodes[target].alive:
            self.failed += 1
            return
        self.dispatch(self.nodes[target], f, now, forwards, extra, now)

    def done(self, now, nid, iid, f):
        node = self.nodes[nid]
        if not node.alive:
            return
        node.busy -= 1
        node.idle.setdefault(f, []).append(iid)
        node.lru[iid] = (f, now)
        while node.queue:
            f2, arrived, forwards, extra = node.queue.pop(0)
            if now - arrived > QUEUE_WAIT_S:
                if WARMUP_S <= arrived < KILL_AT_S:
                    self.rejected += 1
                elif arrived >= KILL_AT_S:
                    self.rejected_after += 1
                continue
            self.dispatch(node, f2, arrived, forwards, extra, now)
            break

    # ---- the shared queue -----------------------------------------------------------
    def queue_pull(self, now):
        """Hands waiting messages to free consumer slots, round robin over live nodes."""
        live = self.live
        tries = 0
        while self.queue_backlog and tries < len(live):
            node = live[self.rr % len(live)]
            self.rr += 1
            if self.queue_waiting[node.id] <= 0:
                tries += 1
                continue
            tries = 0
            size = min(BATCH, len(self.queue_backlog))
            del self.queue_backlog[:size]
            self.queue_waiting[node.id] -= 1
            bid = self.next_batch
            self.next_batch += 1
            node.batches[bid] = size
            run = QUEUE_RUN_MEDIAN_MS * math.exp(self.rng_queue.gauss(0.0, 0.5))
            self.at(now + run / 1000.0, "batch", (node.id, bid))

    def batch_done(self, now, nid, bid):
        node = self.nodes[nid]
        if not node.alive:
            return
        size = node.batches.pop(bid)
        node.acked.append((now + ACK_DELAY_MS / 1000.0, size))
        if len(node.acked) > 64:
            del node.acked[:32]
        self.queue_waiting[nid] += 1
        self.queue_pull(now)

    # ---- failures -------------------------------------------------------------------
    def kill(self, now, nids):
        for nid in nids:
            node = self.nodes[nid]
            node.alive = False
            self.killed.append(nid)
            # requests running or waiting there are lost to their callers
            self.failed += node.busy + len(node.queue)
            self.live = [x for x in self.live if x.alive]
            for f, entry in list(self.directory.items()):
                entry.pop(nid, None)
            in_flight = sum(node.batches.values())
            on_wire = sum(size for lands, size in node.acked if lands > now)
            self.redelivered += in_flight + on_wire
            self.duplicates += on_wire
            back = in_flight + on_wire
            self.queue_waiting[nid] = 0
            if back:
                self.at(now + ACK_WAIT_S, "redeliver", back)
        self.at(now + DETECT_S, "detect", tuple(nids))

    def detect(self, nids):
        for r in range(self.n_regions):
            self.routable[r] = [n for n in self.routable[r] if n not in nids]
            self.routable_set[r] = set(self.routable[r])

    def cold_rates(self):
        """Cold starts per 1,000 requests served, the minute before and after the loss."""
        before = 1000.0 * self.cold_before / max(self.served_before, 1)
        after = 1000.0 * self.cold_after / max(self.served_after, 1)
        return f"{before:.0f}->{after:.0f}"

    # ---- run ------------------------------------------------------------------------
    def run(self):
        n = len(self.nodes)
        region_rate = RATE_PER_NODE * n / self.n_regions
        for r in range(self.n_regions):
            self.at(self.rng_arrival.expovariate(region_rate), "arrive", r)
        self.at(self.rng_queue.expovariate(QUEUE_RATE_PER_NODE * n), "msg", None)
        for node in self.nodes:
            self.queue_waiting[node.id] = CONSUMER_SLOTS
        self.at(KILL_AT_S - 1.0, "burst", QUEUE_BURST_PER_NODE * n)
        t = SWEEP_S
        while t < END_S:
            self.at(t, "sweep", None)
            t += SWEEP_S
        if self.scenario == "node":
            self.at(KILL_AT_S, "kill", (self.region_nodes[0][1 % len(self.region_nodes[0])],))
        else:
            self.at(KILL_AT_S, "kill-region", 0)
        while self.events:
            now, _, kind, data = heapq.heappop(self.events)
            if now >= END_S:
                break
            if kind == "arrive":
                self.arrive(now, data)
                self.at(now + self.rng_arrival.expovariate(region_rate), "arrive", data)
            elif kind == "done":
                self.done(now, *data)
            elif kind == "msg":
                self.queue_backlog.append(now)
                self.queue_pull(now)
                self.at(now + self.rng_queue.expovariate(QUEUE_RATE_PER_NODE * n), "msg", None)
            elif kind == "batch":
                self.batch_done(now, *data)
            elif kind == "burst":
                self.queue_backlog.extend([now] * data)
                self.queue_pull(now)
            elif kind == "redeliver":
                self.queue_backlog.extend([now] * data)
                self.queue_pull(now)
            elif kind == "sweep":
                self.sweep(now)
            elif kind == "kill":
                self.kill(now, list(data))
            elif kind == "kill-region":
                self.region_up[data] = False
                self.kill(now, list(self.region_nodes[data]))
            elif kind == "detect":
                self.detect(set(data))
        return self


_DO_CACHE = {}


def durable_objects(n_nodes, n_regions, killed, seed, rate_nodes):
    """Owners before and after losing `killed`: modulo (today's owner_of) vs rendezvous."""
    key = (n_nodes, n_regions, tuple(killed), seed, rate_nodes)
    if key not in _DO_CACHE:
        _DO_CACHE[key] = _durable_objects(n_nodes, n_regions, killed, seed, rate_nodes)
    return _DO_CACHE[key]


def _durable_objects(n_nodes, n_regions, killed, seed, rate_nodes):
    rng = random.Random(seed * 7 + 6)
    region_nodes = [[i for i in range(n_nodes) if i % n_regions == r] for r in range(n_regions)]
    ids = [rng.getrandbits(64) for _ in range(DO_IDS)]
    homes = [mix64(i ^ 0xD0) % n_regions for i in ids]
    # objects that had a request in the last minute (Zipf over ids, DO_RATE_PER_NODE)
    weights = [1.0 / (k ** ZIPF_S) for k in range(1, DO_IDS + 1)]
    total = sum(weights)
    acc, cum = 0.0, []
    for w in weights:
        acc += w / total
        cum.append(acc)
    active = set()
    for _ in range(int(DO_RATE_PER_NODE * rate_nodes * 60)):
        active.add(min(bisect.bisect_left(cum, rng.random()), DO_IDS - 1))
    moved_mod = moved_hrw = active_mod = active_hrw = 0
    lost = set(killed)
    for k, (i, home) in enumerate(zip(ids, homes)):
        before = region_nodes[home]
        after = [x for x in before if x not in lost]
        if not after:  # the whole home region is gone: every object moves region
            moved_mod += 1
            moved_hrw += 1
            if k in active:
                active_mod += 1
                active_hrw += 1
            continue
        if before[i % len(before)] != after[i % len(after)]:
            moved_mod += 1
            active_mod += k in active
        if rendezvous(i, before) != rendezvous(i, after):
            moved_hrw += 1
            active_hrw += k in active
    return moved_mod, moved_hrw, active_mod, active_hrw, len(active)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only 3 and 9 nodes in one region")
    args = parser.parse_args()
    configs = CONFIGS[:2] if args.quick else CONFIGS
    began = time.process_time()
    print(f"cluster-sim seed={args.seed}: {FUNCTIONS} functions Zipf s={ZIPF_S}, "
          f"{RATE_PER_NODE:g} req/s/node, run times lognormal scaled to {UTILISATION:g} of the slots, "
          f"{SLOTS} slots and {MAX_INSTANCES} instances/node, keep-alive {KEEP_ALIVE_S:g} s")
    print(f"costs: forward {HOP_MS} ms, cold start {COLD_MS:g} ms, cross-region {CROSS_REGION_MS:g} ms; "
          f"measured {WARMUP_S:g}-{KILL_AT_S:g} s, kill at {KILL_AT_S:g} s, detect {DETECT_S:g} s")
    print()
    steady, kills, regions = [], [], []
    for n, r in configs:
        for policy in POLICIES:
            sim = Sim(n, r, policy, args.seed, "node").run()
            lat = sorted(sim.lat)
            steady.append((n, r, policy, sim.warm / max(sim.requests, 1),
                           1 + sim.forwards / max(sim.requests, 1),
                           percentile(lat, 0.5), percentile(lat, 0.99),
                           sum(sim.inst_samples) / max(len(sim.inst_samples), 1),
                           sim.rejected / max(sim.requests + sim.rejected, 1)))
            dos = durable_objects(n, r, sim.killed, args.seed, n)
            kills.append((n, r, policy, sim.failed, sim.cold_rates(),
                          sim.redelivered, sim.duplicates) + dos)
            if r > 1:
                rsim = Sim(n, r, policy, args.seed, "region").run()
                rl = sorted(rsim.rerouted_lat)
                rdos = durable_objects(n, r, rsim.killed, args.seed, n)
                regions.append((n, r, policy, rsim.failed, rsim.cold_rates(),
                                percentile(rl, 0.5), percentile(rl, 0.99), rsim.rejected_after,
                                rsim.redelivered, rdos[0]))

    print("Steady state (60-180 s): warm hits, node hops per request (load balancer -> node = 1),")
    print("added latency (forwards, cold starts, waiting for a slot) of the requests served,")
    print(f"requests refused after waiting {QUEUE_WAIT_S:g} s for a slot (429), instances held per node")
    print(f"{'nodes':>5} {'regions':>7} {'policy':<8} {'warm %':>7} {'hops':>5} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'429 %':>6} {'inst/node':>9}")
    for n, r, policy, warm, hops, p50, p99, inst, rejected in steady:
        print(f"{n:>5} {r:>7} {policy:<8} {warm * 100:>7.1f} {hops:>5.2f} "
              f"{p50:>7.2f} {p99:>7.1f} {rejected * 100:>6.2f} {inst:>9.1f}")
    print()
    print("One node killed at 180 s, with a queue backlog draining: requests failed (in flight")
    print("there, or sent there before the loss was noticed), cold starts per 1,000 requests the")
    print("minute before -> after, queue messages redelivered after AckWait (of which duplicates:")
    print("processed, ack on the wire), Durable Objects (of 20000) that change owner with")
    print("owner_of's modulo vs rendezvous hashing: all, and those active in the last minute")
    print(f"{'nodes':>5} {'regions':>7} {'policy':<8} {'failed':>6} {'cold/1k':>9} {'redeliv':>7} "
          f"{'dups':>4} {'DO mod':>7} {'DO hrw':>7} {'act mod':>8} {'act hrw':>8} {'active':>6}")
    for (n, r, policy, failed, cold, redeliv, dups,
         mod, hrw, amod, ahrw, active) in kills:
        print(f"{n:>5} {r:>7} {policy:<8} {failed:>6} {cold:>9} {redeliv:>7} {dups:>4} "
              f"{mod:>7} {hrw:>7} {amod:>8} {ahrw:>8} {active:>6}")
    if regions:
        print()
        print(f"Region 0 lost at 180 s (DNS fails over after {DNS_FAILOVER_S:g} s): requests failed,")
        print("cold starts per 1,000 requests the minute before -> after, added latency of its")
        print("clients' requests served by another region, 429s after the loss, queue messages")
        print("in flight on its nodes (the queue's stream placed in a surviving region), Durable")
        print(f"Objects homed there (of {DO_IDS})")
        print(f"{'nodes':>5} {'regions':>7} {'policy':<8} {'failed':>6} {'cold/1k':>9} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'429s':>6} {'redeliv':>7} {'DO moved':>8}")
        for n, r, policy, failed, cold, p50, p99, rejected, redeliv, moved in regions:
            print(f"{n:>5} {r:>7} {policy:<8} {failed:>6} {cold:>9} {p50:>7.1f} {p99:>7.1f} "
                  f"{rejected:>6} {redeliv:>7} {moved:>8}")
    print()
    print(f"(CPU time {time.process_time() - began:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
