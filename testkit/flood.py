"""Write a spoofed-source flood with one real scanner hidden in it, fast.

Raw-IP pcap (linktype 101) built with numpy, one fixed-size frame per record
(60 bytes; 68 with queries; shorter packets carry padding, which the decoder
leaves out by the IP total length). Every flood packet comes from its own
source: IPv4 from the 198.18.0.0/15 benchmarking range (RFC 2544; at most
131,072 of them), the rest IPv6 from 2001:db8::/32. It is a SYN to 445, or,
for ``n_queries`` of the IPv4 sources, a DNS A query for a name never asked
before (a random 8-letter first label under example.com: new names and new
prefixes for every packet). The scanner 192.0.2.66 sends SYNs to 445 of
``n_targets`` distinct addresses, spread evenly through the flood. These are
bytes in a file: nothing is sent.

Used by tests/scenarios/test_flood.py and scripts/bench/flood.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from testkit.pcap import LINKTYPE_RAW, pcap_header

SCANNER = "192.0.2.66"
FRAME = 60
FRAME_WITH_QUERIES = 68
_TCP_SYN_445 = bytes.fromhex("c00001bd00000001000000005002ffff00000000")
_IP4 = bytes.fromhex("4500002800004000400600000000000000000000")
_IP6 = bytes.fromhex("6000000000140640") + bytes(32)
# IPv4 (66 bytes, UDP) + UDP to 53 (46 bytes) + DNS query, RD, one question:
# an 8-letter label (patched per packet) under example.com, type A, class IN
_QUERY = (
    bytes.fromhex("4500004200004000401100000000000000000000")
    + bytes.fromhex("d4310035002e0000")
    + bytes.fromhex("000101000001000000000000")
    + b"\x08aaaaaaaa\x07example\x03com\x00\x00\x01\x00\x01"
)
_LABEL = 41  # offset of the 8 letters in _QUERY
_START_US = 1_768_467_600_000_000  # 2026-01-15 09:00 UTC


def _v4(src: np.ndarray, dst: np.ndarray, width: int = FRAME) -> np.ndarray:
    frames = np.zeros((src.shape[0], width), np.uint8)
    frames[:, :40] = np.frombuffer(_IP4 + _TCP_SYN_445, np.uint8)
    frames[:, 12:16] = src.astype(">u4").view(np.uint8).reshape(-1, 4)
    frames[:, 16:20] = dst.astype(">u4").view(np.uint8).reshape(-1, 4)
    return frames


def _queries(src: np.ndarray, rng: np.random.Generator, width: int) -> np.ndarray:
    frames = np.zeros((src.shape[0], width), np.uint8)
    if not src.shape[0]:
        return frames
    frames[:, : len(_QUERY)] = np.frombuffer(_QUERY, np.uint8)
    frames[:, 12:16] = src.astype(">u4").view(np.uint8).reshape(-1, 4)
    frames[:, 16:20] = np.frombuffer(bytes.fromhex("c6336435"), np.uint8)  # 198.51.100.53
    frames[:, _LABEL : _LABEL + 8] = rng.integers(ord("a"), ord("z") + 1, (src.shape[0], 8))
    return frames


def _v6(src_lo: np.ndarray, width: int = FRAME) -> np.ndarray:
    frames = np.zeros((src_lo.shape[0], width), np.uint8)
    frames[:, :60] = np.frombuffer(_IP6 + _TCP_SYN_445, np.uint8)
    frames[:, 8:12] = np.frombuffer(bytes.fromhex("20010db8"), np.uint8)
    frames[:, 16:24] = src_lo.astype(">u8").view(np.uint8).reshape(-1, 8)
    frames[:, 24:28] = np.frombuffer(bytes.fromhex("20010db8"), np.uint8)
    frames[:, 39] = 1  # destination 2001:db8::1
    return frames


def write_flood(
    path: Path, *, n_sources: int, n_targets: int = 400, n_queries: int = 0, seed: int = 7
) -> dict[str, int]:
    """Write the flood; return its bookkeeping."""
    rng = np.random.default_rng(seed)
    width = FRAME_WITH_QUERIES if n_queries else FRAME
    n_v4 = min(n_sources, 1 << 17)
    n_v6 = n_sources - n_v4
    if n_queries > n_v4:
        raise ValueError(f"at most {n_v4} queries (one per IPv4 source), not {n_queries}")
    v4_src = ((198 << 24 | 18 << 16) + rng.permutation(1 << 17)[:n_v4]).astype(np.uint32)
    n_syn4 = n_v4 - n_queries
    flood = np.concatenate(
        [
            _v4(v4_src[:n_syn4], np.full(n_syn4, 0xCB007101, np.uint32), width),
            _queries(v4_src[n_syn4:], rng, width),
            _v6(rng.permutation(n_v6).astype(np.uint64) + np.uint64(1 << 40), width),
        ]
    )[rng.permutation(n_sources)]
    hosts = np.arange(n_targets)
    targets = np.where(
        hosts < 250,
        (203 << 24 | 113 << 8) + hosts % 250 + 1,
        (198 << 24 | 51 << 16 | 100 << 8) + hosts - 249,
    ).astype(np.uint32)
    scanner = _v4(np.full(n_targets, 192 << 24 | 2 << 8 | 66, np.uint32), targets, width)

    n = n_sources + n_targets
    is_scan = np.zeros(n, np.bool_)
    is_scan[np.linspace(0, n - 1, n_targets).astype(np.int64)] = True
    frames = np.empty((n, width), np.uint8)
    frames[is_scan] = scanner
    frames[~is_scan] = flood
    # 10 packets per millisecond of packet time
    ts_us = _START_US + np.arange(n, dtype=np.int64) * 100
    meta = np.stack(
        [ts_us // 1_000_000, ts_us % 1_000_000, np.full(n, width), np.full(n, width)], 1
    )
    records = np.concatenate([meta.astype("<u4").view(np.uint8).reshape(n, 16), frames], axis=1)
    with path.open("wb") as f:
        f.write(pcap_header(LINKTYPE_RAW, snaplen=65535))
        f.write(records.tobytes())
    return {
        "packets": n,
        "sources": n_sources + 1,
        "scanner_targets": n_targets,
        "queries": n_queries,
        "syns": n - n_queries,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--sources", type=int, default=100_000)
    p.add_argument("--targets", type=int, default=400)
    p.add_argument("--queries", type=int, default=0, help="sources that ask a new name")
    args = p.parse_args()
    facts = write_flood(
        args.out, n_sources=args.sources, n_targets=args.targets, n_queries=args.queries
    )
    print(facts)


if __name__ == "__main__":
    main()
