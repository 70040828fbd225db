"""Coverage-guided fuzzing of the decode stage with atheris (libFuzzer for Python).

Each input is one frame: its first byte picks the link type (every supported one, plus
one nobody decodes), the rest are the frame's bytes. The target builds a one-packet
``Batch`` whose buffer is exactly the frame and decodes it with
``wormwatch.decode.Decoder``; the numba kernels run as plain Python
(``NUMBA_DISABLE_JIT=1``, set before wormwatch is imported) so that atheris sees their
branches, and a read past the frame is an ``IndexError``.

What counts as what:

* a crash: any exception from the decoder, or an output out of bounds (a status or kind
  that does not exist, a name over 255 bytes, an ok packet without an event, ...).
  libFuzzer stops and writes the input to ``WORKDIR/crash-*``.
* a finding: the kernel disagrees with the dpkt reference (``testkit/reference.py``) on
  the status or the events. Findings do not stop the run; each new kind (link type,
  both statuses, both event counts) is written to ``WORKDIR/findings.jsonl`` with its
  hex frame. Disagreements of the kind already pinned by the corpus (``first problem
  stays`` in DNS over TCP, ``tests/fuzz_corpus/frames.json``) are counted as known.

With ``--streams`` an input is a stream of frames (a step byte, then per frame a link
type byte, a 2-byte length and the bytes) decoded in one batch with fragment reassembly
(a fresh 4-datagram pool per input, so eviction is reached; packets 1 us or 10 s apart,
so the 30 s timeout is too), compared frame by frame with the reference's reassembler.

The seed corpus is ``tests/fuzz_corpus/frames.json`` plus the relevant frames of the
sample and real captures (streams: the runs of consecutive fragments in them). A line
``inputs N  inputs/s R  findings F  known K  ...`` is printed every 10 s and at the end;
the exit code is 1 when there was a new finding.

Usage::

    python -m scripts.fuzz.decode --seconds 600            # a long run
    python -m scripts.fuzz.decode --streams --seconds 600  # fragment reassembly
    python -m scripts.fuzz.decode --runs 2000 --seed 1     # what the test suite runs
    python -m scripts.fuzz.decode --jit --seconds 60       # compiled kernels, no coverage
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPORT_EVERY_S = 10.0
# seeds taken from the captures (the corpus is always used whole)
MAX_CAPTURE_SEEDS = 400
# streams mode: frames per input, and datagrams the reassembly pools hold (small, so
# that eviction is reached too)
MAX_STREAM_FRAMES = 16
STREAM_POOL = 4
ST_FRAGMENT_CODE = 5


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--runs", type=int, help="stop after this many inputs")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (0: random)")
    p.add_argument("--workdir", help="corpus, crashes and findings (default: a temporary dir)")
    p.add_argument("--jit", action="store_true", help="run the compiled kernels (no coverage)")
    p.add_argument(
        "--streams", action="store_true", help="fuzz streams of frames with fragment reassembly"
    )
    args = p.parse_args(argv)
    if args.seconds is None and args.runs is None:
        p.error("give --seconds or --runs")
    return args


class Fuzzer:
    """The target, its counters and its report.

    In ``streams`` mode an input is several frames (see :meth:`split_stream`) decoded in
    one batch with fragment reassembly (a fresh 4-datagram pool per input) and compared
    with the reference's reassembler; otherwise it is one frame decoded alone.
    """

    def __init__(
        self, workdir: Path, *, runs: int | None, seconds: float | None, streams: bool
    ) -> None:
        # imported here, after NUMBA_DISABLE_JIT is set and under atheris's instrumentation
        import numpy as np

        from wormwatch.decode import Decoder
        from wormwatch.model import ST_MALFORMED, ST_TRUNCATED, addr_words
        from wormwatch.reassemble import Reassembler

        from testkit.decode_compare import (
            FUZZ_LINKTYPES,
            event_row,
            invariant_problems,
            reference_decode,
        )
        from testkit.frames import make_batch
        from testkit.reference import RefDecoder
        from testkit.reference_reassembly import RefReassembler

        self.np = np
        self.linktypes = FUZZ_LINKTYPES
        self.invariant_problems = invariant_problems
        self.event_row = event_row
        self.make_batch = make_batch
        self.reference_decode = reference_decode
        self.addr_words = addr_words
        self.precedence = {ST_TRUNCATED, ST_MALFORMED}
        self.streams = streams
        # fragments stay "fragment" when frames are decoded alone, as decode_frame does
        self.decoder = Decoder(max_events=64, reassemble=False)
        self.new_stream = lambda: (
            Decoder(max_events=64, reassembler=Reassembler(max_datagrams=STREAM_POOL)),
            RefDecoder(RefReassembler(max_datagrams=STREAM_POOL)),
        )
        self.workdir = workdir
        self.max_runs = runs
        self.deadline = time.monotonic() + seconds if seconds is not None else None
        self.start = time.monotonic()
        self.next_report = self.start + REPORT_EVERY_S
        self.n_inputs = 0
        self.n_known = 0
        self.statuses: dict[int, int] = {}
        self.kinds: set[tuple[int, int, int, int, int]] = set()

    def split(self, data: bytes) -> tuple[int, bytes]:
        """One-frame input: link type index byte, then the frame."""
        if not data:
            return self.linktypes[0], b""
        return self.linktypes[data[0] % len(self.linktypes)], data[1:]

    def split_stream(self, data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
        """Stream input: a step byte (even: packets 1 us apart, odd: 10 s apart, past the
        30 s timeout in three steps), then frames as link type byte, 2-byte length, bytes."""
        step_us = 10_000_000 if data[:1] and data[0] & 1 else 1
        frames, pos = [], 1
        while pos + 3 <= len(data) and len(frames) < MAX_STREAM_FRAMES:
            linktype = self.linktypes[data[pos] % len(self.linktypes)]
            size = int.from_bytes(data[pos + 1 : pos + 3], "big")
            frames.append((linktype, data[pos + 3 : pos + 3 + size]))
            pos += 3 + size
        return step_us, frames

    def kernel(
        self, decoder: Any, frames: list[tuple[int, bytes]], step_us: int
    ) -> list[tuple[int, list[tuple[object, ...]]]]:
        """Decode ``frames`` as one batch; -> (status, events) per frame."""
        np = self.np
        # no gap after the last frame: a read past it is an IndexError in plain Python
        ts_us = np.arange(1, len(frames) + 1, dtype=np.int64) * step_us
        batch = self.make_batch(frames, ts_us=ts_us)
        ev = decoder.decode(batch)
        statuses = [int(s) for s in decoder.last_status]
        packets = ev.ts_us[: ev.n] // step_us - 1
        out: list[tuple[int, list[tuple[object, ...]]]] = [(s, []) for s in statuses]
        for i in range(ev.n):
            out[int(packets[i])][1].append(self.event_row(ev, i))
        ev.ts_us = ev.ts_us.copy()
        ev.ts_us[: ev.n] = packets
        problems = self.invariant_problems(ev, statuses)
        if problems:
            hexes = [(lt, f.hex()) for lt, f in frames]
            raise AssertionError(f"frames {hexes}: {problems}")
        return out

    def __call__(self, data: bytes) -> None:
        if self.streams:
            step_us, frames = self.split_stream(data)
            if not frames:
                return
            decoder, reference = self.new_stream()
            kernel = self.kernel(decoder, frames, step_us)
            refs = []
            for i, (linktype, frame) in enumerate(frames):
                status, events = reference.decode(linktype, frame, (i + 1) * step_us)
                rows = [
                    (e.kind, self.addr_words(e.src), self.addr_words(e.dst), e.dport, e.qtype,
                     e.name, e.rcode)
                    for e in events
                ]  # fmt: skip
                refs.append((status, rows))
        else:
            linktype, frame = self.split(data)
            frames = [(linktype, frame)]
            kernel = self.kernel(self.decoder, frames, 1)
            refs = [self.reference_decode(linktype, frame)]
        self.n_inputs += 1
        for (linktype, frame), got, want in zip(frames, kernel, refs, strict=True):
            self.statuses[got[0]] = self.statuses.get(got[0], 0) + 1
            if got != want:
                self.record(linktype, frame, got, want, data if self.streams else None)
        now = time.monotonic()
        if now >= self.next_report:
            self.next_report = now + REPORT_EVERY_S
            self.report()
        is_time_up = self.deadline is not None and now >= self.deadline
        if is_time_up or (self.max_runs is not None and self.n_inputs >= self.max_runs):
            self.report(final=True)
            sys.stdout.flush()
            # libFuzzer's own exit skips Python's atexit and finally: end here instead
            os._exit(1 if self.kinds else 0)

    def record(
        self,
        linktype: int,
        frame: bytes,
        kernel: tuple[Any, ...],
        ref: tuple[Any, ...],
        stream: bytes | None,
    ) -> None:
        """Count a disagreement; write the first of each kind (with its whole stream)."""
        kind = (linktype, kernel[0], ref[0], len(kernel[1]), len(ref[1]))
        if kind in self.kinds:
            return
        self.kinds.add(kind)
        finding = {
            "linktype": linktype,
            "hex": frame.hex(),
            "kernel_status": kernel[0],
            "reference_status": ref[0],
            "kernel_events": len(kernel[1]),
            "reference_events": len(ref[1]),
        }
        if stream is not None:
            finding["stream_input_hex"] = stream.hex()
        with open(self.workdir / "findings.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(finding) + "\n")
        print(f"FINDING {json.dumps(finding)}", flush=True)

    def report(self, *, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        print(
            f"{'DONE ' if final else ''}inputs {self.n_inputs}  "
            f"inputs/s {self.n_inputs / elapsed:.0f}  findings {len(self.kinds)}  "
            f"known {self.n_known}  statuses {statuses}  elapsed {elapsed:.1f}s",
            flush=True,
        )


def write_seeds(fuzzer: Fuzzer, seeds_dir: Path) -> int:
    """Seed inputs: the corpus and a sample of the capture frames, one per file; in
    ``streams`` mode, runs of consecutive fragments of the sample and real captures."""
    from testkit.decode_compare import capture_frames, corpus

    inputs: list[bytes] = []
    if fuzzer.streams:
        run: list[tuple[int, bytes]] = []
        for f in capture_frames(max_len=1500):
            if fuzzer.reference_decode(f.linktype, f.data)[0] == ST_FRAGMENT_CODE:
                run.append((f.linktype, f.data))
                continue
            if run:
                run.append((f.linktype, f.data))
                for step in (b"\x00", b"\x01"):
                    inputs.append(step + b"".join(
                        bytes((fuzzer.linktypes.index(lt),)) + len(fr).to_bytes(2, "big") + fr
                        for lt, fr in run[:MAX_STREAM_FRAMES]
                    ))  # fmt: skip
                run = []
    else:
        frames = [(int(e["linktype"]), bytes.fromhex(e["hex"])) for e in corpus()]
        captured = [(f.linktype, f.data) for f in capture_frames(max_len=1500)]
        relevant = [f for f in captured if fuzzer.reference_decode(*f)[0] != 1]
        frames += relevant[:: max(1, len(relevant) // MAX_CAPTURE_SEEDS)]
        inputs = [bytes((fuzzer.linktypes.index(lt),)) + frame for lt, frame in frames]
    for data in inputs:
        (seeds_dir / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(inputs)


def _rss_limit_mb(budget_mb: int = 2048) -> int:
    """libFuzzer's memory bound: its usual 2 GB over what this process already peaked at.

    libFuzzer reads the peak from getrusage, which Linux carries across execve: a run
    started by a large parent (a test suite that has grown to a few GB) would otherwise
    report out-of-memory before the first input.
    """
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return int(peak_mb) + budget_mb


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    if not args.jit:
        os.environ["NUMBA_DISABLE_JIT"] = "1"
    import atheris

    with atheris.instrument_imports(include=["wormwatch"]):
        import wormwatch.decode
        import wormwatch.kernels.decode
        import wormwatch.kernels.reassemble
        import wormwatch.reassemble  # noqa: F401

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wormwatch-fuzz-"))
    seeds = workdir / "corpus"
    seeds.mkdir(parents=True, exist_ok=True)
    fuzzer = Fuzzer(workdir, runs=args.runs, seconds=args.seconds, streams=args.streams)
    n_seeds = write_seeds(fuzzer, seeds)
    mode = "streams" if args.streams else "frames"
    jit = "on" if args.jit else "off"
    print(f"workdir {workdir}  mode {mode}  seeds {n_seeds}  jit {jit}", flush=True)
    libfuzzer = [
        sys.argv[0],
        str(seeds),
        f"-artifact_prefix={workdir}/",
        f"-max_len={16384 if args.streams else 2048}",
        f"-seed={args.seed}",
        f"-rss_limit_mb={_rss_limit_mb()}",
        "-malloc_limit_mb=2048",
        "-print_final_stats=0",
    ]
    atheris.Setup(libfuzzer, fuzzer)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
