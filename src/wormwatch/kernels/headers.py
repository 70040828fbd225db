"""Header tables of the protocols the kernels read: offsets, field values and flag bits.

The decode kernel (:mod:`wormwatch.kernels.decode`) and the record walkers read packet
bytes by these names, as dpkt names its fields: ``data[ip + IP_PROTO_OFF]``, not
``data[ip + 9]``. numba inlines module globals as constants, so a name costs nothing.
An ``*_OFF`` is a byte offset from the start of its header; an ``*_LEN`` a header
size in bytes.

The values are protocol facts and never change. numba's cache is keyed per source
file: a kernel elsewhere is not recompiled when a value here changes, so if one ever
must change, clear the cache (``__pycache__/*.nbi``) as well.
"""

from __future__ import annotations

from typing import Final

# --- Ethernet (IEEE 802.3) and its tags ---------------------------------------------
ETH_LEN: Final = 14  # destination, source, ethertype
ETH_TYPE_OFF: Final = 12
ETH_P_IP: Final = 0x0800
ETH_P_IPV6: Final = 0x86DD
ETH_P_8021Q: Final = 0x8100  # VLAN tag (IEEE 802.1Q)
ETH_P_8021AD: Final = 0x88A8  # service tag of QinQ (IEEE 802.1ad)
ETH_P_QINQ1: Final = 0x9100  # the pre-standard QinQ outer tag
ETH_P_PPP_SES: Final = 0x8864  # PPPoE session stage (RFC 2516)
VLAN_LEN: Final = 4  # tag control information, then the next ethertype
VLAN_TYPE_OFF: Final = 2
MAX_VLAN_TAGS: Final = 8  # more tags than this: malformed

# --- PPPoE session header (RFC 2516) and the PPP protocol after it ------------------
PPPOE_LEN: Final = 8  # version/type, code, session id, length; PPP protocol
PPPOE_PPP_OFF: Final = 6
PPP_IP: Final = 0x0021
PPP_IPV6: Final = 0x0057

# --- Linux cooked capture -----------------------------------------------------------
SLL_LEN: Final = 16  # LINKTYPE_LINUX_SLL
SLL_PROTO_OFF: Final = 14
SLL2_LEN: Final = 20  # LINKTYPE_LINUX_SLL2: the protocol comes first
SLL2_PROTO_OFF: Final = 0

# --- BSD loopback (LINKTYPE_NULL / LINKTYPE_LOOP): a 4-byte address family ---------
LOOP_LEN: Final = 4
AF_INET: Final = 2
AF_INET6_LINUX: Final = 10
AF_INET6_BSD: Final = 24  # NetBSD, OpenBSD
AF_INET6_FREEBSD: Final = 28
AF_INET6_DARWIN: Final = 30

# --- IPv4 (RFC 791) -----------------------------------------------------------------
IP_LEN_MIN: Final = 20  # header without options
IP_TOTAL_LEN_OFF: Final = 2
IP_ID_OFF: Final = 4
IP_FRAG_OFF: Final = 6  # flags (3 bits) and fragment offset (13 bits, 8-octet units)
IP_PROTO_OFF: Final = 9
IP_SRC_OFF: Final = 12
IP_DST_OFF: Final = 16
IP_ADDR_LEN: Final = 4
IP_MF: Final = 0x2000  # more fragments
IP_OFFMASK: Final = 0x1FFF
IP_MF_SHIFT: Final = 13

# --- IPv6 (RFC 8200) ----------------------------------------------------------------
IP6_LEN: Final = 40
IP6_PLEN_OFF: Final = 4  # payload length
IP6_NXT_OFF: Final = 6  # next header
IP6_SRC_OFF: Final = 8
IP6_DST_OFF: Final = 24
IP6_HALF_LEN: Final = 8  # an address is read as two 64-bit halves
EXT_NXT_OFF: Final = 0  # an extension header's next header
EXT_LEN_OFF: Final = 1  # its length field
MAX_EXT_HEADERS: Final = 16  # more extension headers than this: malformed
# fragment header (RFC 8200 4.5): next header, reserved, offset + M, identification
IP6_FRAG_LEN: Final = 8
IP6_FRAG_OFFLG_OFF: Final = 2
IP6_FRAG_ID_OFF: Final = 4
IP6_OFFMASK: Final = 0xFFF8  # 13-bit offset in 8-octet units, already in bytes
IP6_MF: Final = 0x0001  # more fragments; the two bits between are reserved

# --- IP protocol numbers (IANA), as IPv4 protocol and IPv6 next header --------------
IP_PROTO_HOPOPTS: Final = 0  # IPv6 hop-by-hop options
IP_PROTO_TCP: Final = 6
IP_PROTO_UDP: Final = 17
IP_PROTO_ROUTING: Final = 43  # IPv6 routing header
IP_PROTO_FRAGMENT: Final = 44  # IPv6 fragment header
IP_PROTO_AH: Final = 51  # authentication header (RFC 4302), 4-octet units
IP_PROTO_DSTOPTS: Final = 60  # IPv6 destination options
IP_PROTO_MOBILITY: Final = 135  # mobility header (RFC 6275)

# --- UDP (RFC 768) ------------------------------------------------------------------
UDP_LEN: Final = 8
UDP_SPORT_OFF: Final = 0
UDP_DPORT_OFF: Final = 2
UDP_ULEN_OFF: Final = 4  # length of header and data

# --- TCP (RFC 9293) -----------------------------------------------------------------
TCP_LEN_MIN: Final = 20
TCP_SPORT_OFF: Final = 0
TCP_DPORT_OFF: Final = 2
TCP_SEQ_OFF: Final = 4  # sequence number of the first payload byte (RFC 9293 3.1)
TCP_DOFF_OFF: Final = 12  # data offset in the high nibble, in 4-octet units
TCP_FLAGS_OFF: Final = 13
TCP_FLAGS_END: Final = 14  # a segment cut before here has no flags to read
TH_SYN: Final = 0x02
TH_ACK: Final = 0x10

# --- ports the sensor watches ---------------------------------------------------------
PORT_DNS: Final = 53
PORT_MSRPC: Final = 135  # DCE/RPC endpoint mapper
PORT_NETBIOS_SSN: Final = 139
PORT_SMB: Final = 445  # SMB over TCP

# --- DNS (RFC 1035 4.1) ---------------------------------------------------------------
DNS_LEN: Final = 12  # id, flags, four counts
DNS_FLAGS_OFF: Final = 2
DNS_QR_OPCODE: Final = 0xF8  # QR and opcode: the top five bits of the flags' first byte
DNS_QR: Final = 0x80  # QR set: a response (with opcode 0, an answer to a QUERY)
DNS_RCODE_OFF: Final = 3  # the flags' second byte; RCODE in its low four bits
DNS_RCODE: Final = 0x0F
DNS_QDCOUNT_OFF: Final = 4
DNS_TCP_PREFIX: Final = 2  # RFC 1035 4.2.2: each message over TCP follows its length
DNS_QTYPE_LEN: Final = 2
DNS_LABEL_KIND: Final = 0xC0  # top two bits of a length octet
DNS_LABEL_POINTER: Final = 0xC0  # 11: a 14-bit offset from the start of the message
DNS_POINTER_HIGH: Final = 0x3F  # the pointer's bits in its first octet
DNS_MAX_JUMPS: Final = 128  # more pointers followed than this: a loop, malformed
ASCII_DOT: Final = 0x2E
ASCII_UPPER_A: Final = 0x41
ASCII_UPPER_Z: Final = 0x5A
ASCII_CASE_BIT: Final = 0x20

# --- GRE (RFC 2784, RFC 2890) and what a mirror port's tunnel carries -----------------
IP_PROTO_GRE: Final = 47
GRE_LEN: Final = 4  # flags and version, protocol type (an ethertype)
GRE_PROTO_OFF: Final = 2
GRE_C: Final = 0x8000  # checksum present: 4 bytes (checksum, reserved1)
GRE_R: Final = 0x4000  # routing present (RFC 1701): not walked, ignored
GRE_K: Final = 0x2000  # key present (RFC 2890): 4 bytes
GRE_S: Final = 0x1000  # sequence number present (RFC 2890): 4 bytes
GRE_VERSION: Final = 0x0007  # only version 0 is followed
GRE_OPT_LEN: Final = 4
ETH_P_TEB: Final = 0x6558  # transparent Ethernet bridging: an Ethernet frame
ETH_P_ERSPAN2: Final = 0x88BE  # Cisco ERSPAN type II (type I without GRE's S bit)
ETH_P_ERSPAN3: Final = 0x22EB  # Cisco ERSPAN type III
ERSPAN_VER_SHIFT: Final = 4  # the version is the first byte's high nibble
ERSPAN2_VER: Final = 1
ERSPAN2_LEN: Final = 8
ERSPAN3_VER: Final = 2
ERSPAN3_LEN: Final = 12
ERSPAN3_FLAGS_OFF: Final = 10  # P, FT (frame type), HW ID, D, Gra, O
ERSPAN3_FT: Final = 0x7C00  # frame type: 0 is Ethernet
ERSPAN3_O: Final = 0x0001  # an 8-byte platform-specific sub-header follows
ERSPAN3_PLATFORM_LEN: Final = 8
