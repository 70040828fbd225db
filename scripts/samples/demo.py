"""The demo capture: 30 minutes of a small office network with four infected hosts.

Place in the data flow: input to ``wormwatch demo`` and to the detector tests.
The story (documentation addresses only):

- 20 ordinary clients (18 IPv4, 2 IPv6) browse: bursts of A/AAAA (some HTTPS-type,
  some PTR) queries to the resolver, then HTTPS bulk transfers, so DNS is a minority
  of packets; a little SMB to two file servers, some SYNs retransmitted. Two read
  webmail (a few ``mail.`` queries), one sends names with ESC sequences, control
  bytes and ``[bold]`` markup.
- 192.0.2.66 keyword storm (Mytob-like): only A queries (plus 5 PTR, 0 MX), from
  minute 6 to 26 at a steady machine rate that drifts slowly, ~97% of names start
  with mail/mx/smtp/ns/gate/relay words over hundreds of domains.
- 192.0.2.77 mass mailer: MX queries for a few hundred domains, then SYN to port 25.
- 192.0.2.88 SMB scanner: SYNs to 445, 139 and 135 of 508 addresses (minutes 10 to 22).
- 192.0.2.99 bot: bursts every few minutes in which its MX queries and its 445 SYN
  sweep rise and fall together.
- 192.0.2.25 mail server (MX and mx/mail A lookups; allowlisted by config) and the
  resolver 192.0.2.53 (responses only).
"""

from __future__ import annotations

import math
import random

from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRRMX
from scapy.layers.inet import TCP, UDP
from scapy.packet import Raw

from scripts.samples.capture import (
    MS_NS,
    SEC_NS,
    T0_NS,
    Answer,
    Capture,
    Query,
    Syn,
    ether,
    is_keyword,
    l3,
    stack,
)

DURATION_S = 1800
RESOLVER4, RESOLVER6 = "192.0.2.53", "2001:db8:0:1::53"
MAIL_SERVER, STORM, MAILER, SCANNER, BOT = (
    "192.0.2.25", "192.0.2.66", "192.0.2.77", "192.0.2.88", "192.0.2.99",
)  # fmt: skip
FILE_SERVERS = ("192.0.2.5", "192.0.2.6")
CLIENTS = (*(f"192.0.2.{101 + i}" for i in range(18)), "2001:db8:0:1::a1", "2001:db8:0:1::a2")
SITES = (
    ("www.example.com", "static.example.com", "cdn.example.net"),
    ("news.example.org", "img.example.org", "ads.example.net"),
    ("login.example.com", "api.example.com"),
    ("www.example.net", "fonts.example.net", "analytics.example.com"),
    ("docs.example.org", "assets.example.org"),
    ("video.example.com", "media.example.net", "www.example.com"),
    ("shop.example.net", "pay.example.com", "cdn.example.net"),
    ("wiki.example.org", "upload.example.org"),
    ("updates.example.com", "download.example.net"),
)
HOSTILE_NAMES = (
    b"\x1b[31mred\x1b[0m.example.com",
    b"\x1b]0;owned\x07.example.net",
    b"[bold]boss[/bold].example.org",
    b"bell\x07tab\x09.example.com",
)
STORM_WORDS = (
    "mail",
    "mail1",
    "mailh",
    "mx",
    "mx0",
    "mx1",
    "mx2",
    "smtp",
    "ns",
    "ns1",
    "ns2",
    "gate",
    "relay",
)
SYLLABLES = (
    "ka",
    "vo",
    "ru",
    "mi",
    "ten",
    "sol",
    "dar",
    "pe",
    "lin",
    "ox",
    "qua",
    "zer",
    "bel",
    "tor",
)
QTYPE_NAMES = {1: "A", 28: "AAAA", 15: "MX", 12: "PTR", 65: "HTTPS"}


class Story:
    """Writes the demo into a Capture; every helper books the events it writes."""

    def __init__(self) -> None:
        self.cap = Capture(
            "demo.pcap", 1, "30-minute office story: keyword storm, mass mailer, SMB scanner, bot, "
            "20 ordinary clients, mail server (allowlist it), resolver",
        )  # fmt: skip
        self.rng = random.Random(2026)
        self.qid = 0
        self.port = 0

    # -- primitives -------------------------------------------------------------

    def _next(self) -> tuple[int, int]:
        self.qid = (self.qid + 7919) % 65536
        self.port = (self.port + 1) % 28000
        return self.qid, 32768 + self.port

    def query(
        self, ts: int, src: str, name: bytes, qtype: int, keyword: bool, *, rcode: int = 0
    ) -> None:
        """A query, booked, and the resolver's answer a few milliseconds later."""
        resolver = RESOLVER6 if ":" in src else RESOLVER4
        qid, sport = self._next()
        question = DNSQR(qname=name, qtype=qtype)
        frame = ether(
            stack(l3(src, resolver), UDP(sport=sport, dport=53), DNS(id=qid, rd=1, qd=question))
        )
        self.cap.add(ts, frame, "ok", (Query(src, qtype, keyword),))
        answer = None
        if rcode == 0 and qtype == 1:
            answer = DNSRR(rrname=name, type="A", ttl=300, rdata=f"198.51.100.{qid % 200 + 10}")
        elif rcode == 0 and qtype == 28:
            answer = DNSRR(
                rrname=name, type="AAAA", ttl=300, rdata=f"2001:db8:100::{qid % 200 + 10:x}"
            )
        elif rcode == 0 and qtype == 15:
            answer = DNSRRMX(rrname=name, ttl=3600, preference=10, exchange=b"mx1." + name)
        reply = DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode, qd=question, an=answer)
        back = ether(stack(l3(resolver, src), UDP(sport=53, dport=sport), reply))
        self.cap.add(ts + self.rng.randint(2, 40) * MS_NS, back, "ok", (Answer(src, rcode),))

    def syn(self, ts: int, src: str, dst: str, port: int, *, answer: str = "") -> int:
        """A SYN (booked if to 135/139/445); ``answer`` "SA" or "RA" adds the reply."""
        _, sport = self._next()
        events = (Syn(src, dst, port),) if port in (135, 139, 445) else ()
        first = stack(l3(src, dst), TCP(sport=sport, dport=port, flags="S", seq=ts % 2**32))
        self.cap.add(ts, ether(first), "ok" if events else "ignored", events)
        if answer:
            reply = stack(
                l3(dst, src), TCP(sport=port, dport=sport, flags=answer, ack=ts % 2**32 + 1)
            )
            self.cap.add(ts + self.rng.randint(1, 5) * MS_NS, ether(reply))
        return sport

    def session(
        self,
        ts: int,
        src: str,
        dst: str,
        port: int,
        n_data: int,
        size: int,
        *,
        retransmit: bool = False,
    ) -> None:
        """A TCP connection: SYN (maybe retransmitted), handshake, request, data, close."""
        if retransmit:
            self.syn(ts, src, dst, port)
            ts += SEC_NS
        sport = self.syn(ts, src, dst, port, answer="SA")
        c_seq, s_seq = 1000, 5000
        ts += 10 * MS_NS
        self.cap.add(
            ts,
            ether(
                stack(l3(src, dst), TCP(sport=sport, dport=port, flags="A", seq=c_seq, ack=s_seq))
            ),
        )
        request = Raw(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X" * 200 + b"\r\n\r\n")
        ts += MS_NS
        hello = stack(
            l3(src, dst), TCP(sport=sport, dport=port, flags="PA", seq=c_seq, ack=s_seq), request
        )
        self.cap.add(ts, ether(hello))
        c_seq += len(request)
        for i in range(n_data):
            ts += self.rng.randint(1, 15) * MS_NS
            data = stack(
                l3(dst, src),
                TCP(sport=port, dport=sport, flags="PA", seq=s_seq, ack=c_seq),
                Raw(b"d" * size),
            )
            self.cap.add(ts, ether(data))
            s_seq += size
            if i % 2 == 1 or i == n_data - 1:
                ack = stack(
                    l3(src, dst), TCP(sport=sport, dport=port, flags="A", seq=c_seq, ack=s_seq)
                )
                self.cap.add(ts + MS_NS, ether(ack))
        ts += 50 * MS_NS
        self.cap.add(
            ts,
            ether(
                stack(l3(dst, src), TCP(sport=port, dport=sport, flags="FA", seq=s_seq, ack=c_seq))
            ),
        )
        bye = stack(
            l3(src, dst), TCP(sport=sport, dport=port, flags="FA", seq=c_seq, ack=s_seq + 1)
        )
        self.cap.add(ts + MS_NS, ether(bye))

    def domain(self) -> bytes:
        word = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))
        return f"{word}{self.rng.randint(1, 99)}.example".encode()

    def at(self, seconds: float) -> int:
        return T0_NS + round(seconds * 1000) * MS_NS

    # -- actors -------------------------------------------------------------

    def client(self, index: int, src: str) -> None:
        rng = random.Random(1000 + index)
        modern = index % 3 == 0
        dual_stack = index % 2 == 0 or ":" in src
        for _ in range(rng.randint(8, 13)):
            start = rng.uniform(5, DURATION_S - 30)
            names = [n.encode() for n in rng.choice(SITES)]
            if index in (4, 9) and rng.random() < 0.4:
                names.insert(0, b"mail.example.com")
            t = start
            for name in names:
                keyword = is_keyword(name)
                assert keyword == (name == b"mail.example.com"), name
                self.query(self.at(t), src, name, 1, keyword)
                if dual_stack:
                    self.query(self.at(t + 0.004), src, name, 28, keyword)
                if modern:
                    self.query(self.at(t + 0.006), src, name, 65, keyword)
                t += rng.uniform(0.05, 0.4)
            if rng.random() < 0.15:
                ptr = f"{rng.randint(10, 40)}.100.51.198.in-addr.arpa".encode()
                self.query(self.at(t), src, ptr, 12, False)
            server = "2001:db8:100::80" if ":" in src else f"198.51.100.{rng.randint(10, 40)}"
            for _ in range(rng.randint(1, 2)):
                t += rng.uniform(0.05, 0.3)
                self.session(self.at(t), src, server, 443, rng.randint(3, 8), 400)
        if ":" not in src:
            for _ in range(rng.randint(1, 3)):
                server = rng.choice(FILE_SERVERS)
                start = self.at(rng.uniform(5, DURATION_S - 30))
                self.session(start, src, server, 445, 2, 120, retransmit=rng.random() < 0.3)
        if index == 3:
            for i, name in enumerate(HOSTILE_NAMES):
                self.query(self.at(400 + 300 * i), src, name, 1, False)

    def storm(self) -> None:
        rng = random.Random(66)
        domains = [self.domain() for _ in range(450)]
        for i in range(25):
            self.query(
                self.at(i * 70 + rng.uniform(0, 30)), STORM, rng.choice(SITES)[0].encode(), 1, False
            )
        for i in range(5):
            self.query(
                self.at(200 + i * 330), STORM, f"{66 + i}.2.0.192.in-addr.arpa".encode(), 12, False
            )
        t = 360.0
        while t < 1560.0:
            domain = rng.choice(domains)
            if rng.random() < 0.97:
                self.query(
                    self.at(t),
                    STORM,
                    rng.choice(STORM_WORDS).encode() + b"." + domain,
                    1,
                    True,
                    rcode=3,
                )
            else:
                self.query(
                    self.at(t), STORM, rng.choice((b"www.", b"")) + domain, 1, False, rcode=3
                )
            rate = 1.1 + 0.5 * math.sin(2 * math.pi * t / 420)
            t += rng.uniform(0.95, 1.05) / rate

    def mass_mailer(self) -> None:
        rng = random.Random(77)
        domains = [self.domain() for _ in range(400)]
        t = 120.0
        while t < 1740.0:
            self.query(self.at(t), MAILER, rng.choice(domains), 15, False)
            self.syn(self.at(t + 0.05), MAILER, f"203.0.113.{rng.randint(1, 254)}", 25, answer="RA")
            t += rng.uniform(4, 9)
        for i in range(15):
            self.query(self.at(30 + i * 110), MAILER, rng.choice(SITES)[0].encode(), 1, False)

    def scanner(self) -> None:
        rng = random.Random(88)
        targets = [f"203.0.113.{i}" for i in range(1, 255)] + [
            f"198.51.100.{i}" for i in range(1, 255)
        ]
        step = 720 / len(targets)
        for i, target in enumerate(targets):
            t = 600 + i * step
            replies = rng.random() < 0.1
            for k, port in enumerate((445, 139, 135)):
                self.syn(
                    self.at(t + k * 0.001), SCANNER, target, port, answer="RA" if replies else ""
                )
            if not replies:
                self.syn(self.at(t + 3), SCANNER, target, 445)
        for i in range(8):
            self.query(self.at(60 + i * 220), SCANNER, rng.choice(SITES)[1].encode(), 1, False)

    def bot(self) -> None:
        rng = random.Random(99)
        domains = [self.domain() for _ in range(300)]
        pool = [f"198.51.100.{i}" for i in range(1, 255)] + [
            f"203.0.113.{i}" for i in range(1, 255)
        ]
        rng.shuffle(pool)
        bursts = ((150, 0.6), (450, 1.0), (780, 0.4), (1050, 1.3), (1380, 0.8), (1650, 0.5))
        for start, strength in bursts:
            for _ in range(round(25 * strength)):
                self.query(
                    self.at(rng.triangular(start, start + 100, start + 50)),
                    BOT,
                    rng.choice(domains),
                    15,
                    False,
                )
            for _ in range(round(70 * strength)):
                t = rng.triangular(start, start + 100, start + 50)
                target = pool.pop()
                self.syn(self.at(t), BOT, target, 445)
                if rng.random() < 0.2:
                    self.syn(self.at(t + 3), BOT, target, 445)
        for i in range(14):
            self.query(self.at(40 + i * 125), BOT, rng.choice(SITES)[0].encode(), 1, False)

    def mail_server(self) -> None:
        rng = random.Random(25)
        domains = [self.domain() for _ in range(80)]
        t = 10.0
        while t < DURATION_S - 5:
            domain = rng.choice(domains)
            self.query(self.at(t), MAIL_SERVER, domain, 15, False)
            self.query(
                self.at(t + 0.03), MAIL_SERVER, rng.choice((b"mx1.", b"mail.")) + domain, 1, True
            )
            t += rng.uniform(10, 30)


def demo() -> Capture:
    """Build the whole story."""
    story = Story()
    for index, src in enumerate(CLIENTS):
        story.client(index, src)
    story.storm()
    story.mass_mailer()
    story.scanner()
    story.bot()
    story.mail_server()
    cap = story.cap
    cap.verdicts = {src: [] for src in CLIENTS}
    cap.verdicts.update({
        STORM: ["keyword-storm"],
        MAILER: ["mx-client"],
        SCANNER: ["smb-scan"],
        BOT: ["mx-client", "smb-scan", "bot-sync"],
        MAIL_SERVER: [],
        RESOLVER4: [],
    })  # fmt: skip
    return cap
