"""The kernel-side packet filter of live capture.

Place in the flow: text handed to libpcap before the first packet is read; the
kernel then passes only what the decoder could count (docs/DECODING.md):

- a DNS message to or from port 53 over UDP, or a TCP segment to or from port 53
  that carries payload (queries go to 53, answers come from it; the decoder reads
  QR itself; answers feed the dga-nx signal);
- a TCP SYN without ACK to 135, 139 or 445;
- every IPv4 fragment of TCP or UDP, which the decoder reassembles;
- any IPv6 packet whose first next-header is an extension header, because
  libpcap's ``tcp``/``udp`` only look at the fixed header's next-header and the
  decoder walks extension headers (rare in practice, cheap to admit);

for IPv4 and IPv6, untagged, with one 802.1Q/802.1ad tag, or with two (QinQ),
and in untagged PPPoE sessions.

Two libpcap rules shape the text:

- ``tcp[tcpflags]`` reaches only IPv4, so IPv6 SYNs have their own clause that
  reads the flags at a fixed offset (40-byte header + 13).
- the first ``vlan`` keyword shifts every later offset for the rest of the
  expression, whatever the parentheses. So the tagged clauses come last, nested
  (``F or (vlan and (F or (vlan and F)))``), and an operator's filter is
  repeated inside each depth instead of being and-ed once at the end. On a live
  Linux interface the kernel has already moved the outer tag into packet
  metadata; libpcap's ``vlan`` then tests that metadata, and the same text
  counts the same packets live and offline (tests/source/test_bpf.py, tests/source/test_live.py).
"""

from __future__ import annotations

import re
from typing import Final

import pcapy

from wormwatch.errors import WormwatchError

DLT_EN10MB: Final = 1  # Ethernet, the only link type libpcap 1.9 compiles ``vlan`` for
# Ports whose SYNs are evidence (DESIGN.md: Windows service ports).
_SYN_PORTS: Final = (135, 139, 445)
# IPv6 next-header values the decoder walks (RFC 8200 4.1; AH RFC 4302; mobility RFC 6275).
_IPV6_EXT_HEADERS: Final = (0, 43, 44, 51, 60, 135)
# Keywords that move libpcap's offsets; in an operator filter they would shift our clauses.
_OFFSET_KEYWORDS: Final = re.compile(r"\b(vlan|mpls|pppoes|geneve|vxlan)\b")


def _dst_ports(ports: tuple[int, ...]) -> str:
    return " or ".join(f"tcp dst port {port}" for port in ports)


def _untagged_clause() -> str:
    """What the decoder counts in a frame without a VLAN tag (IPv4 and IPv6)."""
    syn_ports = _dst_ports(_SYN_PORTS)
    # IPv4 TCP payload length: total length - IP header - TCP header (RFC 791, RFC 793).
    tcp4_payload = "ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2) != 0"
    # IPv6 without extension headers: payload length - TCP header (TCP flags at 40 + 13).
    tcp6_payload = "ip6[4:2] - ((ip6[52] & 0xf0) >> 2) != 0"
    ext_headers = " or ".join(f"ip6[6] == {nh}" for nh in _IPV6_EXT_HEADERS)
    clauses = (
        # every IPv4 fragment of TCP or UDP (MF set or an offset): the decoder
        # reassembles them, and a later fragment has no ports for the clauses
        # below (IPv6 fragments come in by their extension header, 44). First,
        # because a load past the packet's end (tcp[13] of a tiny first
        # fragment) ends a BPF program with "reject" whatever follows.
        "(ip and ip[6:2] & 0x3fff != 0 and (ip[9] == 6 or ip[9] == 17))",
        "udp port 53",
        f"(ip and tcp port 53 and {tcp4_payload})",
        f"(ip6 and tcp port 53 and {tcp6_payload})",
        f"(ip and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and ({syn_ports}))",
        f"(ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02 and ({syn_ports}))",
        f"(ip6 and ({ext_headers}))",
    )
    return "(" + " or ".join(clauses) + ")"


def _pppoe_clause() -> str:
    """The untagged clause for PPPoE session frames (RFC 2516), by absolute offsets.

    ``ether[...]`` is not moved by ``vlan``, so this can follow the tagged
    clauses; libpcap's own ``pppoes`` would move every later offset again.
    IPv4 starts at byte 22 (14 Ethernet + 6 PPPoE + 2 PPP protocol); IPv6
    without extension headers puts the transport header at 62.
    """
    l4 = "22 + ((ether[22] & 0xf) << 2)"
    dport4 = f"ether[{l4} + 2 : 2]"
    dns4 = f"({dport4} == 53 or ether[{l4} : 2] == 53)"
    syn4 = f"ether[{l4} + 13] & 0x12 == 0x02"
    ports4 = " or ".join(f"{dport4} == {port}" for port in _SYN_PORTS)
    ipv4 = (
        "ether[20:2] == 0x0021 and ether[28:2] & 0x1fff == 0"
        f" and ((ether[31] == 17 and {dns4})"
        f" or (ether[31] == 6 and ({dns4} or ({syn4} and ({ports4})))))"
    )
    ports6 = " or ".join(f"ether[64:2] == {port}" for port in _SYN_PORTS)
    ext6 = " or ".join(f"ether[28] == {nh}" for nh in _IPV6_EXT_HEADERS)
    syn6 = f"ether[75] & 0x12 == 0x02 and ({ports6})"
    dns6 = "(ether[64:2] == 53 or ether[62:2] == 53)"
    ipv6 = (
        f"ether[20:2] == 0x0057 and ({ext6} or (ether[28] == 17 and {dns6})"
        f" or (ether[28] == 6 and ({dns6} or ({syn6}))))"
    )
    return f"(ether[12:2] == 0x8864 and (({ipv4}) or ({ipv6})))"


def _at_every_depth(clause: str) -> str:
    """``clause`` untagged, under one tag, and under two (see module docstring)."""
    return f"{clause} or (vlan and ({clause} or (vlan and {clause})))"


def default_filter() -> str:
    """The filter live capture installs on an Ethernet interface when the operator gives none.

    Returns:
        A libpcap filter expression admitting DNS to and from port 53 (UDP, and
        TCP with payload), SYN-without-ACK to 135/139/445, IPv4 and IPv6, with zero, one
        or two VLAN tags, and the same in untagged PPPoE sessions.
    """
    return f"{_at_every_depth(_untagged_clause())} or {_pppoe_clause()}"


def filter_for(linktype: int, user_filter: str | None = None) -> str:
    """The filter for a capture of ``linktype``: :func:`combine` on Ethernet.

    libpcap 1.9 cannot compile ``vlan`` for Linux cooked capture (``-i any``)
    or raw IP, so those get the untagged clause only; the kernel has already
    moved a single tag into packet metadata there, so only QinQ frames seen
    through ``-i any`` are missed.

    Args:
        linktype: the capture's ``datalink()``.
        user_filter: the operator's ``--bpf`` expression, or None.

    Returns:
        The filter text to install.
    """
    if linktype == DLT_EN10MB:
        return combine(user_filter)
    _check_user_filter(user_filter)
    if user_filter is None or not user_filter.strip():
        return _untagged_clause()
    return f"(({user_filter}) and {_untagged_clause()})"


def combine(user_filter: str | None) -> str:
    """The default filter narrowed by the operator's ``--bpf`` expression.

    The operator's expression is and-ed with the default at each tag depth, so
    ``host 198.51.100.7`` also narrows tagged frames correctly. PPPoE frames are
    left out then: libpcap cannot apply ``host``/``net`` inside them without
    ``pppoes``, which would move the other clauses' offsets.

    Args:
        user_filter: a libpcap expression, or None/blank for no narrowing.

    Returns:
        The filter text to install.

    Raises:
        WormwatchError: the expression uses a keyword that moves libpcap's
            header offsets (``vlan``, ``mpls``, ``pppoes``, ...).
    """
    _check_user_filter(user_filter)
    if user_filter is None or not user_filter.strip():
        return default_filter()
    return _at_every_depth(f"(({user_filter}) and {_untagged_clause()})")


def _check_user_filter(user_filter: str | None) -> None:
    if user_filter is not None and _OFFSET_KEYWORDS.search(user_filter):
        raise WormwatchError(
            f"--bpf {user_filter!r}: vlan/mpls/pppoes/geneve/vxlan are not allowed there "
            "(wormwatch already matches tagged frames; narrow by host, net or port instead)"
        )


def compile_filter(expression: str, *, linktype: int, snaplen: int = 1600) -> pcapy.BPFProgram:
    """Compile ``expression`` for ``linktype`` without a capture handle.

    Args:
        expression: libpcap filter text.
        linktype: the DLT/LINKTYPE value of the frames it will see.
        snaplen: the capture length the program assumes.

    Returns:
        pcapy's ``BPFProgram``; ``program.filter(frame)`` is non-zero when it admits.

    Raises:
        WormwatchError: libpcap cannot compile it (its message is included).
    """
    try:
        return pcapy.compile(linktype, snaplen, expression, 1, 0)
    except pcapy.PcapError as err:
        raise WormwatchError(f"BPF filter does not compile: {err}") from err
