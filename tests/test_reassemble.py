"""IP fragment reassembly: the kernel pool against the dict-based reference, and the rules.

Frames are raw IPv4/IPv6 fragments built with struct; every case is decoded by the
real ``Decoder`` (kernel pool, batches of several sizes so that a datagram's fragments
sit in different batches) and by ``reference.RefDecoder``; statuses, events and the
reassembly counters must be equal, and equal to what docs/DECODING.md "Fragments" says.
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wormwatch.decode import Decoder, warm_up
from wormwatch.kernels import decode as decode_kernels
from wormwatch.kernels import reassemble as reassemble_kernels
from wormwatch.model import (
    KIND_ANSWER,
    KIND_DNS,
    KIND_SYN,
    LINKTYPE_RAW,
    ST_FRAGMENT,
    ST_IGNORED,
    ST_OK,
    Batch,
    addr_text,
)
from wormwatch.reassemble import Reassembler
from wormwatch.source.pcapfile import open_replay

from testkit.events import decoder_events
from testkit.frames import TCP_SYN, dns, tcp, udp
from testkit.frames import make_batch as batch_of
from testkit.reference import RefDecoder, RefEvent, reference_events
from testkit.reference_reassembly import RefReassembler

REPO = Path(__file__).resolve().parents[1]
SRC4, DST4 = bytes((192, 0, 2, 10)), bytes((192, 0, 2, 53))
SRC6 = bytes.fromhex("20010db8000000000000000000000010")
DST6 = bytes.fromhex("20010db8000000000000000000000053")
SEC = 1_000_000
Frame = tuple[int, bytes]  # (ts_us, raw IP frame)


def dns_udp(name: bytes = b"\x04mail\x07example\x03com\x00", qtype: int = 1) -> bytes:
    """A UDP datagram (header included) holding a DNS query; ``name`` encoded."""
    return udp(dns(question=name + struct.pack("!HH", qtype, 1)), sport=30000)


def syn(dport: int = 445) -> bytes:
    return tcp(dport=dport, sport=40000, flags=TCP_SYN, seq=7)


def frag4(
    data: bytes, offset: int, *, more: bool, ident: int = 1, proto: int = 17, src: bytes = SRC4
) -> bytes:
    field = (0x2000 if more else 0) | (offset // 8)
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(data), ident, field, 64, proto, 0)
    return header + src + DST4 + data


def frag6(
    data: bytes, offset: int, *, more: bool, ident: int = 1, nh: int = 17, src: bytes = SRC6
) -> bytes:
    header = struct.pack("!IHBB", 0x6000_0000, 8 + len(data), 44, 64) + src + DST6
    return header + struct.pack("!BBHI", nh, 0, offset | int(more), ident) + data


def pieces(payload: bytes, cuts: list[int], make=frag4, **kw) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Fragments of ``payload`` cut at the byte offsets ``cuts`` (multiples of 8)."""
    bounds = [0, *cuts, len(payload)]
    return [
        make(payload[lo:hi], lo, more=hi < len(payload), **kw)
        for lo, hi in itertools.pairwise(bounds)
    ]


def ref_run(
    frames: list[Frame], reassembler: RefReassembler | None = None
) -> tuple[list[int], list[RefEvent], dict[str, int]]:
    decoder = RefDecoder(reassembler)
    statuses, events = [], []
    for ts, frame in frames:
        status, evs = decoder.decode(LINKTYPE_RAW, frame, ts)
        statuses.append(status)
        events.extend(evs)
    return statuses, events, decoder.reassembler.counters


def make_batch(frames: list[Frame]) -> Batch:
    return batch_of([(LINKTYPE_RAW, f) for _, f in frames], ts_us=[t for t, _ in frames])


def kernel_run(
    frames: list[Frame], batch_size: int = 1000, **pool: int
) -> tuple[list[int], list[RefEvent], dict[str, int]]:
    decoder = Decoder(max_events=64, reassembler=Reassembler(**pool))
    statuses: list[int] = []
    events: list[RefEvent] = []
    for lo in range(0, len(frames), batch_size):
        batch = make_batch(frames[lo : lo + batch_size])
        ev = decoder.decode(batch)
        statuses += [int(s) for s in decoder.last_status]
        for i in range(ev.n):
            events.append(
                RefEvent(
                    int(ev.ts_us[i]),
                    addr_text(ev.src_hi[i], ev.src_lo[i]),
                    addr_text(ev.dst_hi[i], ev.dst_lo[i]),
                    int(ev.kind[i]),
                    int(ev.dport[i]),
                    int(ev.qtype[i]),
                    bytes(ev.names[i, : ev.name_lens[i]]),
                    int(ev.rcode[i]),
                )
            )
    counters = {k: v for k, v in decoder.stats.fragments.items() if k != "pending"}
    return statuses, events, counters


def both(frames: list[Frame], **pool: int) -> tuple[list[int], list[RefEvent], dict[str, int]]:
    """Kernel (in batches of 1, 2 and all) and reference must agree; -> the answer."""
    ref_pool = {"max_datagrams": pool.get("max_datagrams", 1024)}
    if "timeout_s" in pool:
        ref_pool["timeout_us"] = int(pool["timeout_s"] * SEC)
    if "max_datagram_bytes" in pool:
        ref_pool["max_datagram_bytes"] = pool["max_datagram_bytes"]
    want = ref_run(frames, RefReassembler(**ref_pool))
    for size in (1, 2, 1000):
        assert kernel_run(frames, size, **pool) == want, size
    return want


def timed(frames: list[bytes], step_us: int = 1000) -> list[Frame]:
    return [(i * step_us, f) for i, f in enumerate(frames)]


# --- order ------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
@pytest.mark.parametrize("make", [frag4, frag6], ids=["v4", "v6"])
def test_a_query_in_three_fragments_counts_once_at_the_completing_one(order, make) -> None:  # type: ignore[no-untyped-def]
    frags = pieces(dns_udp(), [16, 32], make)
    statuses, events, counters = both(timed([frags[i] for i in order]))
    assert statuses == [ST_FRAGMENT, ST_FRAGMENT, ST_OK]
    assert [(e.ts_us, e.kind, e.qtype, e.name) for e in events] == [
        (2000, KIND_DNS, 1, b"mail.example.com")
    ]
    assert events[0].src == ("192.0.2.10" if make is frag4 else "2001:db8::10")
    assert counters["reassembled"] == 1


def test_events_keep_packet_order_around_a_completed_datagram() -> None:
    plain_syn = frag4(syn(), 0, more=False, proto=6)  # offset 0, MF clear: not a fragment
    frags = pieces(dns_udp(), [16], frag4)
    frames = timed([plain_syn, frags[1], plain_syn, frags[0], plain_syn])
    statuses, events, _ = both(frames)
    assert statuses == [ST_OK, ST_FRAGMENT, ST_OK, ST_OK, ST_OK]
    assert [(e.ts_us, e.kind) for e in events] == [
        (0, KIND_SYN), (2000, KIND_SYN), (3000, KIND_DNS), (4000, KIND_SYN),
    ]  # fmt: skip


def test_a_syn_whose_first_fragment_holds_8_bytes_of_tcp_counts() -> None:
    frags = pieces(syn(), [8], frag4, proto=6)
    statuses, events, _ = both(timed(frags))
    assert statuses == [ST_FRAGMENT, ST_OK]
    assert [(e.kind, e.dport) for e in events] == [(KIND_SYN, 445)]


def test_fragments_of_other_sources_ids_and_protocols_do_not_mix() -> None:
    a = pieces(dns_udp(), [16], frag4)
    b = pieces(dns_udp(b"\x03www\x00", 28), [16], frag4, src=bytes((198, 51, 100, 7)))
    c = pieces(dns_udp(), [16], frag4, ident=2)
    d = pieces(syn(), [8], frag4, proto=6)  # same id and addresses as a, other protocol
    statuses, events, _ = both(timed([a[0], b[0], c[1], d[0], b[1], a[1], d[1], c[0]]))
    assert statuses.count(ST_OK) == 4
    assert [(e.src, e.kind) for e in events] == [
        ("198.51.100.7", KIND_DNS), ("192.0.2.10", KIND_DNS), ("192.0.2.10", KIND_SYN),
        ("192.0.2.10", KIND_DNS),
    ]  # fmt: skip


# --- overlaps, duplicates, bad fragments --------------------------------------------------


def test_overlapping_bytes_keep_the_first_received() -> None:
    real = dns_udp()
    forged = real[:21] + b"smtp" + real[25:]  # "mail" is at bytes 21..25
    frags = pieces(real, [16, 32], frag4)
    overwrite = frag4(forged[16:32], 16, more=True)
    _, events, counters = both(timed([frags[0], frags[1], overwrite, frags[2]]))
    assert [e.name for e in events] == [b"mail.example.com"]
    assert counters["overlapping"] == 1
    # the forged bytes first: they stay
    _, events, _ = both(timed([frags[0], overwrite, frags[1], frags[2]]))
    assert [e.name for e in events] == [b"smtp.example.com"]


def test_duplicates_change_nothing_and_count_as_overlaps() -> None:
    frags = pieces(dns_udp(), [16, 32], frag6)
    statuses, events, counters = both(timed([frags[0], frags[0], frags[1], frags[0], frags[2]]))
    assert statuses == [ST_FRAGMENT] * 4 + [ST_OK]
    assert len(events) == 1
    assert counters == {
        "reassembled": 1, "timed_out": 0, "evicted": 0, "overlapping": 2, "bad": 0,
    }  # fmt: skip


def test_an_empty_fragment_inside_the_datagram_is_no_overlap() -> None:
    # a fragment with no data at offset 8, inside the first one's bytes: it holds no
    # byte of the datagram, so it overlaps nothing (the counters say so)
    frags = pieces(dns_udp(), [16, 32], frag4)
    empty = frag4(b"", 8, more=True)
    _, events, counters = both(timed([frags[0], empty, frags[1], frags[2]]))
    assert [e.name for e in events] == [b"mail.example.com"]
    assert counters["overlapping"] == 0


def test_a_second_offset_0_fragment_cannot_change_the_port() -> None:
    to_80, to_445 = syn(80), syn(445)
    frames = timed(
        [
            frag4(to_80[:8], 0, more=True, proto=6),
            frag4(to_445[:8], 0, more=True, proto=6),
            frag4(to_445[8:], 8, more=False, proto=6),
        ]
    )
    statuses, events, _ = both(frames)
    assert statuses == [ST_FRAGMENT, ST_FRAGMENT, ST_IGNORED]
    assert events == []


@pytest.mark.parametrize(
    "frame",
    [
        frag4(b"\x00" * 16, 65504, more=False),  # ends at 65520 > 65535 - 20
        frag6(b"\x00" * 16, 65528, more=False),  # ends at 65544 > 65535
        frag4(b"\x00" * 16, 0, more=True)[:30],  # cut by the snaplen
    ],
    ids=["v4-past-65515", "v6-past-65535", "snaplen-cut"],
)
def test_bad_fragments_are_refused(frame: bytes) -> None:
    statuses, events, counters = both([(0, frame)])
    assert (statuses, events, counters["bad"]) == ([ST_FRAGMENT], [], 1)


def test_the_largest_datagrams_are_reassembled() -> None:
    payload = dns_udp() + b"\x00" * (65515 - len(dns_udp()))
    frags4 = [
        frag4(payload[lo : lo + 8192], lo, more=lo + 8192 < len(payload))
        for lo in range(0, len(payload), 8192)
    ]
    statuses, events, _ = both(timed(frags4))
    assert statuses[-1] == ST_OK
    assert len(events) == 1


def test_inconsistent_ends_are_bad() -> None:
    frags = pieces(dns_udp(), [16, 32], frag4)
    short_last = frag4(b"\x00" * 8, 8, more=False)  # ends before held bytes
    long_middle = frag4(b"\x00" * 64, 32, more=True)  # past the known end
    statuses, _, counters = both(timed([frags[0], frags[2], short_last, long_middle, frags[1]]))
    assert statuses == [ST_FRAGMENT] * 4 + [ST_OK]
    assert counters["bad"] == 2


# --- time and the pool ----------------------------------------------------------------------


def test_a_datagram_times_out_30_s_after_its_first_fragment() -> None:
    frags = pieces(dns_udp(), [16, 32], frag4)
    late = [(0, frags[0]), (10 * SEC, frags[1]), (30 * SEC + 1, frags[2])]
    statuses, events, counters = both(late)
    assert (statuses, events, counters["timed_out"]) == ([ST_FRAGMENT] * 3, [], 2)
    just_in_time = [(0, frags[0]), (10 * SEC, frags[1]), (30 * SEC, frags[2])]
    statuses, events, _ = both(just_in_time)
    assert statuses[-1] == ST_OK
    assert len(events) == 1
    statuses, _, counters = both(late, timeout_s=60)
    assert statuses[-1] == ST_OK
    assert counters["timed_out"] == 0


def test_a_full_pool_evicts_the_datagram_whose_first_fragment_is_oldest() -> None:
    a, b, c = (pieces(dns_udp(), [16], frag4, ident=i) for i in (1, 2, 3))
    # c[0] evicts a (first fragment oldest); b and c complete; a[1] alone stays pending
    frames = timed([a[0], b[0], c[0], b[1], c[1], a[1]])
    statuses, events, counters = both(frames, max_datagrams=2)
    assert statuses == [ST_FRAGMENT] * 3 + [ST_OK, ST_OK, ST_FRAGMENT]
    assert len(events) == 2
    assert counters["evicted"] == 1
    decoder = Decoder(reassembler=Reassembler(max_datagrams=2))
    assert decoder.stats.fragments == {}


def test_a_small_slot_size_refuses_bigger_datagrams() -> None:
    frags = pieces(dns_udp(), [16, 32], frag4)
    statuses, _, counters = both(timed(frags), max_datagram_bytes=32)
    assert statuses == [ST_FRAGMENT] * 3
    assert counters["bad"] == 1


def test_reassembler_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_datagram"):
        Reassembler(max_datagrams=0)
    with pytest.raises(ValueError, match="max_datagram"):
        Reassembler(max_datagram_bytes=65536)


# --- captures ---------------------------------------------------------------------------------

FRAG_SAMPLES = sorted((REPO / "pcaps").glob("frag_*.pcap"))


@pytest.mark.parametrize("path", FRAG_SAMPLES, ids=lambda p: p.name)
def test_samples_counters_equal_the_reference(path: Path) -> None:
    ref = RefDecoder()
    want = reference_events(path, ref)
    assert decoder_events(path, batch_packets=2) == want
    decoder = Decoder()
    source = open_replay([str(path)])
    while (batch := source.read_batch(3)) is not None:
        decoder.decode(batch)
    source.close()
    got = {k: v for k, v in decoder.stats.fragments.items() if k != "pending"}
    assert got == ref.reassembler.counters


def test_sample_counters_say_what_each_case_is() -> None:
    expected = {
        "frag_dns_v4.pcap": {"reassembled": 2},
        "frag_syn_tiny.pcap": {"reassembled": 2},
        "frag_dns_v6.pcap": {"reassembled": 1},
        "frag_overlap.pcap": {"reassembled": 3, "overlapping": 3},
        "frag_timeout.pcap": {"reassembled": 1, "timed_out": 3},
        "frag_interleaved.pcap": {"reassembled": 2},
    }
    for name, want in expected.items():
        ref = RefDecoder()
        reference_events(REPO / "pcaps" / name, ref)
        assert {k: v for k, v in ref.reassembler.counters.items() if v} == want, name


def test_real_fragmented_captures_agree_with_their_sources_facts(real_pcaps: Path) -> None:
    # SOURCES.md: TXT x3 (the response is in IPv6 fragments); tshark reassembles it at
    # frame 8, whose response is an answer event
    statuses, events = reference_events(real_pcaps / "zeek_ipv6-fragmented-dns.pcap")
    assert sorted(e.qtype for e in events if e.kind == KIND_DNS) == [16, 16, 16]
    assert [e.qtype for e in events if e.kind == KIND_ANSWER] == [16, 16]
    assert statuses[7] == ST_OK
    assert statuses.count(ST_FRAGMENT) == 3
    # SOURCES.md: AAAA x8, A x7, DNSKEY x4, SOA x1; 8 IPv4 fragments = 4 responses
    ref = RefDecoder()
    _, events = reference_events(real_pcaps / "zeek_dns-edns-ecs.pcap", ref)
    queries = [e for e in events if e.kind == KIND_DNS]
    by_qtype = {q: sum(e.qtype == q for e in queries) for q in (28, 1, 48, 6)}
    assert by_qtype == {28: 8, 1: 7, 48: 4, 6: 1}
    assert len(queries) == 20
    # and 65 answers (tshark: 65 DNS responses, 8 of them over TCP), 4 of them
    # reassembled from fragments
    assert len(events) - len(queries) == 65
    assert ref.reassembler.counters["reassembled"] == 4
    # five fragments, all with MF set: never complete
    statuses, events = reference_events(real_pcaps / "zeek_ipv4-fragmented-3.pcap")
    assert statuses == [ST_FRAGMENT] * 5
    assert events == []


# --- properties --------------------------------------------------------------------------------


@st.composite
def fragment_sets(draw: st.DrawFn) -> list[Frame]:
    """Fragments of a few datagrams (two ids, two versions): each cut into a partition
    of its payload, plus extra overlapping or inconsistent pieces, some frames cut short;
    shuffled and spread over up to 40 s."""
    frames: list[bytes] = []
    for n in range(draw(st.integers(1, 3))):
        make = draw(st.sampled_from((frag4, frag6)))
        payload = draw(st.sampled_from((dns_udp(), syn(), dns_udp(b"\x02mx\x00", 15))))
        payload += bytes(draw(st.integers(0, 40)))
        proto = 6 if len(payload) < 28 else 17
        kw = {"ident": n % 2, "proto" if make is frag4 else "nh": proto}
        units = range(1, (len(payload) - 1) // 8 + 1)
        cuts = sorted(draw(st.sets(st.sampled_from(units), max_size=4))) if units else []
        parts = pieces(payload, [8 * c for c in cuts], make, **kw)
        frames += draw(st.lists(st.sampled_from(parts), min_size=0, max_size=2)) + parts
        for _ in range(draw(st.integers(0, 2))):
            lo = 8 * draw(st.integers(0, len(payload) // 8))
            hi = draw(st.integers(lo, len(payload) + 8))
            data = bytes((draw(st.integers(0, 255)),)) * (hi - lo)
            frames.append(make(data, lo, more=draw(st.booleans()), **kw))
    frames = [
        f[: draw(st.integers(0, len(f)))] if draw(st.integers(0, 9)) == 0 else f for f in frames
    ]
    order = draw(st.permutations(range(len(frames))))
    span = draw(st.sampled_from((SEC, 40 * SEC)))
    times = sorted(draw(st.lists(st.integers(0, span), min_size=len(frames), max_size=len(frames))))
    return [(ts, frames[i]) for ts, i in zip(times, order, strict=True)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragment_sets(), st.integers(1, 3))
def test_random_fragment_sets_agree_with_the_reference(frames: list[Frame], n_slots: int) -> None:
    want = ref_run(frames, RefReassembler(max_datagrams=n_slots))
    decoder_answer = kernel_run(frames, 3, max_datagrams=n_slots)
    assert decoder_answer == want
    reassembler = Reassembler(max_datagrams=n_slots)
    Decoder(max_events=64, reassembler=reassembler).decode(make_batch(frames))
    assert 0 <= reassembler.counters()["pending"] <= n_slots


@pytest.mark.parametrize("n_slots", [1, 7, 64])
def test_many_datagrams_with_time_going_back_agree_with_the_reference(n_slots: int) -> None:
    """Hundreds of open datagrams: deep heaps, hash collisions, evictions and timeouts,
    with packet time that sometimes goes backwards (merged captures)."""
    rng = np.random.default_rng(n_slots)
    frames: list[Frame] = []
    for group in range(30):
        # ten datagrams at a time, their fragments shuffled together, a tenth lost
        mixed: list[Frame] = []
        for n in range(10 * group, 10 * group + 10):
            make = frag4 if n % 3 else frag6
            src = bytes((192, 0, 2, n % 7)) if make is frag4 else SRC6[:-1] + bytes((n % 7,))
            parts = pieces(dns_udp(), [16, 32], make, ident=n % 50, src=src)
            mixed += [(0, part) for part in parts if rng.random() < 0.9]
        frames += [mixed[i] for i in rng.permutation(len(mixed))]
    times = np.cumsum(rng.integers(-2 * SEC, 3 * SEC, len(frames)))
    frames = [(int(t), f) for t, (_, f) in zip(times, frames, strict=True)]
    statuses, _, counters = both(frames, max_datagrams=n_slots)
    assert counters["reassembled"] == statuses.count(ST_OK) > 0
    assert counters["evicted"] + counters["timed_out"] > 0


# --- compiled once ----------------------------------------------------------------------------


def test_warm_up_reassembles_and_each_kernel_compiled_exactly_one_signature() -> None:
    """Runs after the tests above: the fragment paths added no second signature."""
    warm_up()
    assert len(reassemble_kernels.reassemble.signatures) == 1
    both(timed(pieces(dns_udp(), [16], frag6)))
    assert len(decode_kernels.decode_packets.signatures) == 1
    assert len(reassemble_kernels.reassemble.signatures) == 1
