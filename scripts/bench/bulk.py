"""Fast generator of a large, mixed Ethernet pcap for the replay benchmark.

Place in the flow: makes the *input* of ``wormwatch replay`` for
``scripts/bench/replay.py`` and ``tests/scenarios/test_bench_smoke.py``; nothing in the
package imports it. Out: a little-endian microsecond pcap (linktype 1) and a
JSON side file with the generator's own bookkeeping (what every source host
sent, in the shape of the ``--summary`` host records, so a replay can be
checked against it).

What the file holds (shares of packets): 70% bulk TCP segments of varied sizes
between a few hundred hosts, 3% other UDP, 20% DNS query packets (about 5% of
them over TCP, a quarter of those with two messages) from thousands of clients
(198.18.0.0/15 and 2001:db8::/32), a few keyword-storm and MX-query hosts among
them, 4% DNS responses, 1% SYNs from one scanner to 135/139/445, 2% SYNs that
must not count (to 80/443, to 53 without payload, SYN|ACK to 445). About 11%
of the frames carry an 802.1Q tag (1% QinQ), about a fifth are IPv6. Packet
time spans ``--span`` seconds. All addresses are documentation or benchmarking
ranges (RFC 5737, RFC 3849, RFC 2544): these are bytes in a file, nothing is sent.

The frames are written by ``scripts/bench/bulk_frames.py`` from templates patched
with numpy: 2M packets (1.25 GB) take about 10 s here, mostly writing, where
scapy would manage about 2k packets/s.

Usage: python -m scripts.bench.bulk OUT.pcap [--packets N] [--seed S] [--span S]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wormwatch.config import DEFAULT_KEYWORDS

from scripts.bench.bulk_frames import (
    BULK_PAYLOADS,
    CAT_BULK,
    CAT_DNS,
    CAT_NOSYN,
    CAT_RESP,
    CAT_SCAN,
    CAT_UDP,
    UDP_PAYLOADS,
    Plan,
    write_pcap,
)
from testkit.pcap import LINKTYPE_ETHERNET, idb, shb

GEN_VERSION = 4  # bump when the output for the same parameters changes (cache key)
START_S = 1_767_225_600  # 2026-01-01T00:00:00Z

# Shares of packets by category (order of bulk_frames.CAT_*).
CAT_NAMES = ("bulk_tcp", "other_udp", "dns_query", "dns_response", "scan_syn", "other_syn")
CAT_SHARES = (0.70, 0.03, 0.20, 0.04, 0.01, 0.02)
VLAN_SHARES = (0.89, 0.10, 0.01)  # no tag, 802.1Q, QinQ
DNS_TCP_SHARE = 0.05
DNS_TCP_TWO_SHARE = 0.25

QTYPES = {"A": 1, "NS": 2, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33}
SUMMARY_QTYPES = ("A", "AAAA", "MX", "PTR")
BULK_WEIGHTS = (0.30, 0.35, *([0.35 / 28] * 28))
BULK_SERVER_PORTS = (443, 80, 22, 8080, 445, 993, 3389)

# Ordinary names: some start with a keyword (a mail client asks mail.example.com),
# some are near misses that must not match (imail, smt, gat, xmx).
NORMAL_NAMES = (
    "www.example.com", "cdn.example.net", "api.example.org", "login.example.com",
    "img.example.net", "static.example.org", "update.example.com", "time.example.net",
    "docs.example.org", "video.example.com", "WWW.Example.COM", "tracker.example.net",
    "push.example.org", "imail.example.com", "smt.example.net", "gat.example.org",
    "xmx.example.com", "a.b.c.d.e.f.deep.example.org", "x" * 60 + ".long.example.com",
    "mail.example.com", "Mail.Example.Org", "smtp.example.net", "ns1.example.com",
)  # fmt: skip
PTR_NAMES = (
    "10.2.0.192.in-addr.arpa", "53.2.0.192.in-addr.arpa", "1.100.51.198.in-addr.arpa",
    ".".join("1" + "0" * 23) + ".8.b.d.0.1.0.0.2.ip6.arpa",  # 2001:db8::1, 32 nibbles
)  # fmt: skip
STORM_PREFIXES = ("mail", "mail1", "smtp", "mx", "mx0", "mx1", "relay", "gate", "mailh", "ns")
STORM_DOMAINS = tuple(f"example-{c}.com" for c in "abcdefgh")
MX_DOMAINS = tuple(f"example-{i}.{tld}" for i in range(15) for tld in ("com", "net"))


@dataclass(frozen=True, slots=True)
class Kinds:
    """The (name, qtype) pairs a query can ask, and who asks which how often."""

    names: tuple[str, ...]
    qtypes: tuple[int, ...]
    normal: tuple[np.ndarray, np.ndarray]  # (kind indices, probabilities)
    storm: tuple[np.ndarray, np.ndarray]
    mx: tuple[np.ndarray, np.ndarray]

    def is_keyword(self, kind: int) -> bool:
        first = self.names[kind].lower().split(".", 1)[0]
        return first.startswith(DEFAULT_KEYWORDS)


def make_kinds() -> Kinds:
    """All query kinds; the three populations draw from their own subsets."""
    pairs: list[tuple[str, int]] = []

    def add(items: list[tuple[str, str, float]]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(len(pairs), len(pairs) + len(items))
        pairs.extend((name, QTYPES[qtype]) for name, qtype, _ in items)
        weights = np.array([w for *_, w in items])
        return idx, weights / weights.sum()

    normal = [(name, qt, w) for name in NORMAL_NAMES for qt, w in (("A", 6.0), ("AAAA", 3.2))]
    normal += [(name, "PTR", 2.0) for name in PTR_NAMES]
    normal += [("_dmarc.example.com", "TXT", 1.5), ("_ldap._tcp.example.org", "SRV", 1.0)]
    normal += [("example.com", "NS", 0.5), ("example.org", "MX", 0.1)]
    storm = [(f"{p}.{d}", "A", 1.0) for p in STORM_PREFIXES for d in STORM_DOMAINS]
    storm += [(PTR_NAMES[0], "PTR", 0.1)]
    mx = [(d, "MX", 1.0) for d in MX_DOMAINS] + [(f"mx.{d}", "A", 0.4) for d in MX_DOMAINS]
    groups = (add(normal), add(storm), add(mx))
    return Kinds(
        names=tuple(p[0] for p in pairs),
        qtypes=tuple(p[1] for p in pairs),
        normal=groups[0],
        storm=groups[1],
        mx=groups[2],
    )


@dataclass(slots=True)
class Hosts:
    """Every address the file uses; an id is a row. IPv4 rows use the first 4 bytes."""

    addrs: np.ndarray  # (n, 16) uint8
    is_v6: np.ndarray  # (n,) bool
    names: list[str]
    groups: dict[str, np.ndarray]  # population name -> host ids

    @staticmethod
    def build(n_clients: int, n_targets: int, rng: np.random.Generator) -> Hosts:
        texts: list[str] = []
        groups: dict[str, np.ndarray] = {}

        def add(name: str, items: list[str]) -> None:
            groups[name] = np.arange(len(texts), len(texts) + len(items))
            texts.extend(items)

        n_v4 = n_clients - n_clients // 4
        add("resolver", ["192.0.2.53", "2001:db8::53"])
        add("client4", [f"198.18.{1 + i // 250}.{1 + i % 250}" for i in range(n_v4)])
        add("client6", [f"2001:db8:c::{i + 1:x}" for i in range(n_clients - n_v4)])
        add("storm", ["198.51.100.10", "198.51.100.11", "2001:db8:bad::66"])
        add("mx", [f"198.51.100.{20 + i}" for i in range(4)])
        add("scanner", ["203.0.113.66"])
        add("bulk4", [f"198.51.100.{100 + i}" for i in range(120)])
        groups["bulk4"] = np.concatenate([groups["bulk4"], np.arange(len(texts), len(texts) + 120)])
        texts.extend(f"203.0.113.{100 + i}" for i in range(120))
        add("bulk6", [f"2001:db8:b::{i + 1:x}" for i in range(60)])
        # scan targets in 198.19.0.0/16, apart from the clients in 198.18.0.0/16
        t_base = int(ipaddress.IPv4Address("198.19.0.0"))
        picks = rng.choice(65536, size=min(n_targets, 65536), replace=False)
        add("target", [str(ipaddress.IPv4Address(t_base + int(p))) for p in picks])
        addrs = np.zeros((len(texts), 16), np.uint8)
        is_v6 = np.zeros(len(texts), bool)
        for i, text in enumerate(texts):
            packed = ipaddress.ip_address(text).packed
            addrs[i, : len(packed)] = np.frombuffer(packed, np.uint8)
            is_v6[i] = len(packed) == 16
        return Hosts(addrs, is_v6, texts, groups)


def _pick(rng: np.random.Generator, ids: np.ndarray, size: int) -> np.ndarray:
    return ids[rng.integers(0, len(ids), size)]


def _draw_dns(plan: Plan, hosts: Hosts, kinds: Kinds, rng: np.random.Generator) -> None:
    """Clients, kinds and transport of the DNS query packets; responses to clients."""
    g = hosts.groups
    clients = np.concatenate([g["client4"], g["client6"]])
    zipf = 1.0 / (np.arange(len(clients)) + 10.0) ** 0.9
    for cat in (CAT_DNS, CAT_RESP):
        rows = np.flatnonzero(plan.cat == cat)
        who = rng.choice(len(clients), size=len(rows), p=zipf / zipf.sum())
        plan.src[rows] = clients[who]
        plan.param[rows] = rng.choice(kinds.normal[0], size=len(rows), p=kinds.normal[1])
        if cat == CAT_RESP:
            break
        # 2% of the queries from each storm host, 0.5% from each MX host
        roll = rng.random(len(rows))
        for group, share, (ids, probs) in (("storm", 0.02, kinds.storm), ("mx", 0.005, kinds.mx)):
            for k, host in enumerate(g[group]):
                lo = (k * share) if group == "storm" else 0.06 + k * share
                sel = rows[(roll >= lo) & (roll < lo + share)]
                plan.src[sel] = host
                plan.param[sel] = rng.choice(ids, size=len(sel), p=probs)
        transport = rng.random(len(rows))
        is_tcp = transport < DNS_TCP_SHARE
        is_two = transport < DNS_TCP_SHARE * DNS_TCP_TWO_SHARE
        plan.param[rows] += np.where(is_two, 2, np.where(is_tcp, 1, 0)) * len(kinds.names)
        plan.n_msgs[rows] = np.where(is_two, 2, 1)
        plan.dport[rows] = 53
    resolver = np.where(hosts.is_v6[plan.src], g["resolver"][1], g["resolver"][0])
    queries = plan.cat == CAT_DNS
    plan.dst[queries] = resolver[queries]
    responses = np.flatnonzero(plan.cat == CAT_RESP)
    plan.dst[responses] = plan.src[responses]
    plan.src[responses] = resolver[responses]
    plan.dport[responses] = plan.sport[responses]
    plan.sport[responses] = 53


def draw_plan(n: int, hosts: Hosts, kinds: Kinds, rng: np.random.Generator, span_s: float) -> Plan:
    """Choose every packet's category, hosts, ports and template parameter."""
    g = hosts.groups
    z = np.zeros(n, np.int64)
    plan = Plan(
        ts_us=START_S * 1_000_000 + np.sort(rng.integers(0, int(span_s * 1e6), n)),
        cat=rng.choice(len(CAT_SHARES), size=n, p=CAT_SHARES).astype(np.int64),
        vlan=rng.choice(3, size=n, p=VLAN_SHARES).astype(np.int64),
        param=z.copy(),
        src=z.copy(),
        dst=z.copy(),
        sport=rng.integers(1024, 65536, n),
        dport=z.copy(),
        ipid=rng.integers(0, 65536, n),
        dnsid=rng.integers(0, 65536, n),
        n_msgs=z.copy(),
    )
    bulk = np.concatenate([g["bulk4"], g["bulk6"]])
    for cat in (CAT_BULK, CAT_UDP, CAT_NOSYN):
        rows = np.flatnonzero(plan.cat == cat)
        plan.src[rows] = _pick(rng, bulk, len(rows))
        v6 = hosts.is_v6[plan.src[rows]]
        plan.dst[rows] = np.where(
            v6, _pick(rng, g["bulk6"], len(rows)), _pick(rng, g["bulk4"], len(rows))
        )
        if cat == CAT_BULK:
            plan.param[rows] = rng.choice(len(BULK_PAYLOADS), size=len(rows), p=BULK_WEIGHTS)
            server = np.array(BULK_SERVER_PORTS)[rng.integers(0, len(BULK_SERVER_PORTS), len(rows))]
            to_server = rng.random(len(rows)) < 0.5
            eph = plan.sport[rows]
            plan.sport[rows] = np.where(to_server, eph, server)
            plan.dport[rows] = np.where(to_server, server, eph)
        elif cat == CAT_UDP:
            plan.param[rows] = rng.integers(0, len(UDP_PAYLOADS), len(rows))
            plan.dport[rows] = np.array((443, 123))[rng.integers(0, 2, len(rows))]
        else:
            # SYN to 443/80/53 (no payload) or SYN|ACK to 445: none of them counts
            plan.param[rows] = rng.integers(0, 2, len(rows))
            plan.dport[rows] = np.where(
                plan.param[rows] == 1, 445, np.array((443, 80, 53))[rng.integers(0, 3, len(rows))]
            )
    rows = np.flatnonzero(plan.cat == CAT_SCAN)
    plan.src[rows] = g["scanner"][0]
    plan.dst[rows] = _pick(rng, g["target"], len(rows))
    plan.dport[rows] = np.array((445, 445, 445, 139, 135))[rng.integers(0, 5, len(rows))]
    # 5% ECN-setup SYNs (SYN|ECE|CWR, RFC 3168): still a SYN without ACK
    plan.param[rows] = rng.random(len(rows)) < 0.05
    _draw_dns(plan, hosts, kinds, rng)
    return plan


# --- bookkeeping -----------------------------------------------------------------


def bookkeeping(plan: Plan, hosts: Hosts, kinds: Kinds) -> dict[str, Any]:
    """What the file holds: totals, and per source host the ``--summary`` counts."""
    n_hosts = len(hosts.names)
    is_query = plan.cat == CAT_DNS
    kind = plan.param % len(kinds.names)
    qtype = np.array(kinds.qtypes)[kind]
    is_kw = np.array([kinds.is_keyword(k) for k in range(len(kinds.names))])[kind]
    is_scan = plan.cat == CAT_SCAN
    # every response is one NXDOMAIN answer from the resolver (an answer event)
    is_answer = plan.cat == CAT_RESP

    def per_host(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(plan.src[mask], weights=w, minlength=n_hosts).astype(np.int64)

    queries = {"total": per_host(is_query, plan.n_msgs)}
    for name in SUMMARY_QTYPES:
        queries[name] = per_host(is_query & (qtype == QTYPES[name]), plan.n_msgs)
    queries["other"] = queries["total"] - sum(queries[name] for name in SUMMARY_QTYPES)
    keyword = per_host(is_query & is_kw, plan.n_msgs)
    syn = {str(port): per_host(is_scan & (plan.dport == port)) for port in (135, 139, 445)}
    pairs = np.unique(np.stack([plan.src[is_scan], plan.dst[is_scan]]), axis=1)
    targets = np.bincount(pairs[0], minlength=n_hosts)
    n_syns = np.stack(list(syn.values())).sum(axis=0)
    # a client that only received answers is a host too (answers count for their client)
    answered = np.bincount(plan.dst[is_answer], minlength=n_hosts)
    active = np.flatnonzero((queries["total"] > 0) | (n_syns > 0) | (answered > 0))
    per_addr = {
        hosts.names[h]: {
            "queries": {k: int(v[h]) for k, v in queries.items()},
            "keyword_queries": int(keyword[h]),
            "syn": {k: int(v[h]) for k, v in syn.items()},
            "syn_targets": int(targets[h]),
        }
        for h in active
    }
    n_dns_tcp = int(np.count_nonzero(is_query & (plan.param >= len(kinds.names))))
    return {
        "generator": {"version": GEN_VERSION, "packets": len(plan.ts_us)},
        "packets": len(plan.ts_us),
        "first_ts_us": int(plan.ts_us[0]),
        "last_ts_us": int(plan.ts_us[-1]),
        "categories": {n: int(np.count_nonzero(plan.cat == i)) for i, n in enumerate(CAT_NAMES)},
        "ipv6_frames": int(np.count_nonzero(hosts.is_v6[plan.src])),
        "vlan_frames": {
            "1q": int(np.count_nonzero(plan.vlan == 1)),
            "qinq": int(np.count_nonzero(plan.vlan == 2)),
        },
        "dns_queries": int(plan.n_msgs.sum()),
        "dns_query_packets": int(np.count_nonzero(is_query)),
        "dns_tcp_segments": n_dns_tcp,
        "dns_tcp_two_message_segments": int(np.count_nonzero(is_query & (plan.n_msgs == 2))),
        "qtypes": {k: int(v.sum()) for k, v in queries.items() if k != "total"},
        "keyword_queries": int(keyword.sum()),
        "syns": {k: int(v.sum()) for k, v in syn.items()},
        "dns_answers": int(np.count_nonzero(is_answer)),
        "status": {
            "ok": int(np.count_nonzero(is_query | is_scan | is_answer)),
            "ignored": int(np.count_nonzero(~(is_query | is_scan | is_answer))),
        },
        "hosts": per_addr,
    }


# --- entry points ----------------------------------------------------------------


def generate(
    path: Path, *, n_packets: int, seed: int = 1, span_s: float = 1200.0
) -> dict[str, Any]:
    """Write the pcap to ``path`` and its bookkeeping to ``path.with_suffix('.json')``.

    Deterministic for the same arguments. Both files are written under a
    temporary name and renamed, so a cache never sees half a file.

    Returns:
        The bookkeeping (also in the JSON file), plus ``bytes``: the file size.
    """
    rng = np.random.default_rng(seed)
    kinds = make_kinds()
    n_clients = min(6000, max(20, n_packets // 400))
    n_targets = max(1, int(n_packets * CAT_SHARES[CAT_SCAN] * 0.85))
    hosts = Hosts.build(n_clients, n_targets, rng)
    plan = draw_plan(n_packets, hosts, kinds, rng, span_s)
    tmp = path.with_name(path.name + ".part")
    n_bytes, n_templates = write_pcap(
        tmp, plan, hosts.addrs, hosts.is_v6, list(zip(kinds.names, kinds.qtypes, strict=True))
    )
    book = bookkeeping(plan, hosts, kinds)
    book["templates"] = n_templates
    book["bytes"] = n_bytes
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".part")
    side_tmp.write_text(json.dumps(book, indent=1) + "\n")
    tmp.replace(path)
    side_tmp.replace(side)
    return book


def cached(
    out_dir: Path, *, n_packets: int, seed: int = 1, span_s: float = 1200.0
) -> tuple[Path, dict[str, Any], bool]:
    """The pcap for these parameters in ``out_dir``, generating it only if missing.

    Returns:
        (pcap path, bookkeeping, whether it was generated now).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bulk-n{n_packets}-s{seed}-t{span_s:g}-v{GEN_VERSION}.pcap"
    side = path.with_suffix(".json")
    if path.exists() and side.exists():
        return path, json.loads(side.read_text()), False
    return path, generate(path, n_packets=n_packets, seed=seed, span_s=span_s), True


def as_pcapng(path: Path) -> Path:
    """The generated pcap as pcapng beside it (``.pcapng``; written once): one Ethernet
    interface, microsecond timestamps, an Enhanced Packet Block per record, as
    ``editcap -F pcapng`` writes it (the format Wireshark saves by default)."""
    out = path.with_suffix(".pcapng")
    if out.exists():
        return out
    tmp = out.with_name(out.name + ".part")
    # read, not mapped: a mapping would leave this process's peak RSS at the file's size,
    # and every child it starts after that reports that peak as its own (vfork + exec)
    with path.open("rb") as f, tmp.open("wb") as w:
        w.write(shb() + idb(LINKTYPE_ETHERNET))
        f.read(24)
        parts: list[bytes] = []
        while len(header := f.read(16)) == 16:
            sec, usec, caplen, wirelen = struct.unpack("<IIII", header)
            ticks = sec * 1_000_000 + usec
            pad = -caplen % 4
            length = 32 + caplen + pad
            head = (6, length, 0, ticks >> 32, ticks & 0xFFFF_FFFF, caplen, wirelen)
            parts += (
                struct.pack("<7I", *head),
                f.read(caplen),
                bytes(pad) + struct.pack("<I", length),
            )
            if len(parts) >= 30_000:
                w.write(b"".join(parts))
                parts.clear()
        w.write(b"".join(parts))
    tmp.replace(out)
    return out


def describe(book: dict[str, Any]) -> str:
    """The bookkeeping as a few readable lines (without the per-host table)."""
    span = (book["last_ts_us"] - book["first_ts_us"]) / 1e6
    hosts = book["hosts"]
    top = sorted(
        hosts.items(), key=lambda kv: -kv[1]["queries"]["total"] - sum(kv[1]["syn"].values())
    )
    lines = [
        f"packets {book['packets']:,}  bytes {book['bytes']:,}  span {span:.0f} s"
        f"  templates {book['templates']}",
        "categories " + "  ".join(f"{k} {v:,}" for k, v in book["categories"].items()),
        f"dns queries {book['dns_queries']:,} in {book['dns_query_packets']:,} packets"
        f" ({book['dns_tcp_segments']:,} TCP segments, {book['dns_tcp_two_message_segments']:,}"
        f" with two messages); keyword {book['keyword_queries']:,}; "
        + " ".join(f"{k} {v:,}" for k, v in book["qtypes"].items()),
        "syns " + " ".join(f"{k}:{v:,}" for k, v in book["syns"].items()),
        f"ipv6 frames {book['ipv6_frames']:,}  802.1Q {book['vlan_frames']['1q']:,}"
        f"  QinQ {book['vlan_frames']['qinq']:,}",
        f"expected status ok {book['status']['ok']:,}  ignored {book['status']['ignored']:,}",
        f"source hosts with events {len(hosts):,}; busiest:",
    ]
    for addr, rec in top[:6]:
        lines.append(
            f"  {addr:<20} queries {rec['queries']['total']:>7,}"
            f" keyword {rec['keyword_queries']:>7,}"
            f" MX {rec['queries']['MX']:>5,} syn {sum(rec['syn'].values()):>6,}"
            f" targets {rec['syn_targets']:,}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="pcap to write (bookkeeping goes beside it, .json)")
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--span", type=float, default=1200.0, help="packet-time span, seconds")
    args = parser.parse_args()
    t0 = time.perf_counter()
    book = generate(args.out, n_packets=args.packets, seed=args.seed, span_s=args.span)
    elapsed = time.perf_counter() - t0
    print(describe(book))
    print(f"generated in {elapsed:.2f} s ({args.packets / elapsed / 1e6:.2f} M packets/s)")


def as_book(ref: dict[str, int]) -> dict[str, Any]:
    """A reference ``host_counts`` row in the shape of the generator's per-host bookkeeping."""
    return {
        "queries": {"total": ref["queries"]}
        | {k: ref[k] for k in ("A", "AAAA", "MX", "PTR", "other")},
        "keyword_queries": ref["keyword"],
        "syn": {p: ref[f"syn{p}"] for p in ("135", "139", "445")},
        "syn_targets": ref["syn_targets"],
    }


if __name__ == "__main__":
    main()
