"""Write the sample captures in pcaps/ and their manifest, deterministically.

Place in the data flow: before it. Runs the demo story (``demo``) and the
parser cases (``cases``, ``names``, ``frags``), writes
each capture, then ``MANIFEST.toml`` from the generator's own bookkeeping (what it
wrote and meant), and copies ``demo.pcap`` to ``src/wormwatch/data/`` for the installed
package.
Fixed seeds and fixed timestamps: running it twice gives identical bytes.

Usage::

    python -m scripts.samples.make              # rewrite pcaps/ and the package copy
    python -m scripts.samples.make --out DIR    # write everything into DIR only
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shutil
import sys
from pathlib import Path

from scripts.samples.capture import STATUS_KEYS, Capture, write_capture
from scripts.samples.cases import CASES
from scripts.samples.demo import demo
from scripts.samples.frags import FRAG_CASES
from scripts.samples.names import DNS_CASES
from testkit.paths import REPO

MANIFEST_HEADER = """\
# Sample captures, made by `python -m scripts.samples.make`: do not edit, run it again.
# One [[capture]] per file. All counts come from the generator's own bookkeeping
# (what it wrote and meant), not from any decoder.
#   packets   records in the file
#   status    packets per decode status, as docs/DECODING.md defines them
#   expect    per host (a query's or SYN's source, an answer's destination): DNS
#             query messages by qtype of the first question ("other" includes
#             qtype 0 = no readable question), keyword queries (first label starts
#             with mail/smtp/mx/ns/gate/relay), SYN without ACK per port, distinct SYN
#             destinations, DNS answers received and the NXDOMAIN ones, first/last
#             event time (us)
#   verdicts  the story's intent per host (story captures only; [] = must not be
#             flagged; 192.0.2.25 is the mail server, meant to be allowlisted)
"""


def all_captures() -> list[Capture]:
    """Every sample capture, demo first."""
    captures = [demo()]
    for make in (*CASES, *DNS_CASES, *FRAG_CASES):
        made = make()
        captures.extend(made if isinstance(made, list) else [made])
    return captures


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _host_key(address: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(address)
    return ip.version, int(ip)


def manifest_text(captures: list[Capture]) -> str:
    """The TOML manifest for ``captures``."""
    lines = [MANIFEST_HEADER]
    for cap in captures:
        linktypes = [i[0] for i in cap.interfaces] or [cap.linktype]
        lines += ["[[capture]]", f"file = {_toml(cap.file)}", f"linktype = {linktypes[0]}"]
        lines += [f"linktypes = {_toml(linktypes)}", f"packets = {len(cap.records)}"]
        lines += [f"notes = {_toml(cap.notes)}", "", "[capture.status]"]
        lines += [f"{key} = {cap.status[key]}" for key in STATUS_KEYS]
        for host in sorted(cap.hosts, key=_host_key):
            lines += ["", f"[capture.expect.{_toml(host)}]"]
            lines += [f"{k} = {v}" for k, v in cap.hosts[host].as_dict().items()]
        if cap.verdicts:
            lines += ["", "[capture.verdicts]"]
            for host in sorted(cap.verdicts, key=_host_key):
                lines.append(f"{_toml(host)} = {_toml(cap.verdicts[host])}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, help="write into this directory instead of pcaps/")
    args = parser.parse_args(argv)
    out: Path = args.out or REPO / "pcaps"
    out.mkdir(parents=True, exist_ok=True)
    captures = all_captures()
    for cap in captures:
        path = write_capture(cap, out)
        print(f"{path.name:24} {len(cap.records):6} packets {path.stat().st_size:9} bytes")
    (out / "MANIFEST.toml").write_text(manifest_text(captures))
    if args.out is None:
        shutil.copyfile(out / "demo.pcap", REPO / "src" / "wormwatch" / "data" / "demo.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
