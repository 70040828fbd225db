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
* a finding: the kernel disagrees with the dpkt reference (``tests/reference.py``) on
  the status or the events. Findings do not stop the run; each new kind (link type,
  both statuses, both event counts) is written to ``WORKDIR/findings.jsonl`` with its
  hex frame. Disagreements of the kind already pinned by the corpus (``first problem
  stays`` in DNS over TCP, ``tests/fuzz_corpus/frames.json``) are counted as known.

The seed corpus is ``tests/fuzz_corpus/frames.json`` plus the relevant frames of the
sample and real captures. A line ``inputs N  inputs/s R  findings F  known K  ...`` is
printed every 10 s and at the end; the exit code is 1 when there was a new finding.

Usage::

    python scripts/fuzz_decode.py --seconds 600            # a long run
    python scripts/fuzz_decode.py --runs 3000 --seed 1     # what the test suite runs
    python scripts/fuzz_decode.py --jit --seconds 60       # compiled kernels, no coverage
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT_EVERY_S = 10.0
# seeds taken from the captures (the corpus is always used whole)
MAX_CAPTURE_SEEDS = 400


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument("--runs", type=int, help="stop after this many inputs")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (0: random)")
    p.add_argument("--workdir", help="corpus, crashes and findings (default: a temporary dir)")
    p.add_argument("--jit", action="store_true", help="run the compiled kernels (no coverage)")
    args = p.parse_args(argv)
    if args.seconds is None and args.runs is None:
        p.error("give --seconds or --runs")
    return args


class Fuzzer:
    """The target, its counters and its report."""

    def __init__(self, workdir: Path, *, runs: int | None, seconds: float | None) -> None:
        # imported here, after NUMBA_DISABLE_JIT is set and under atheris's instrumentation
        import numpy as np

        from decode_compare import FUZZ_LINKTYPES, invariant_problems, reference_decode
        from wormwatch.decode import Decoder
        from wormwatch.model import ST_MALFORMED, ST_TRUNCATED, Batch

        self.np = np
        self.Batch = Batch
        self.linktypes = FUZZ_LINKTYPES
        self.invariant_problems = invariant_problems
        self.reference_decode = reference_decode
        self.precedence = {ST_TRUNCATED, ST_MALFORMED}
        # fragments stay "fragment": the per-frame reference does not reassemble
        self.decoder = Decoder(max_events=64, reassemble=False)
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
        if not data:
            return self.linktypes[0], b""
        return self.linktypes[data[0] % len(self.linktypes)], data[1:]

    def kernel(self, linktype: int, frame: bytes) -> tuple[int, list[tuple[object, ...]]]:
        np = self.np
        batch = self.Batch(
            data=np.frombuffer(frame, np.uint8),
            ts_us=np.zeros(1, np.int64),
            offsets=np.zeros(1, np.int64),
            caplens=np.array([len(frame)], np.int32),
            wirelens=np.array([len(frame)], np.int32),
            linktypes=np.array([linktype], np.int32),
        )
        ev = self.decoder.decode(batch)
        statuses = [int(s) for s in self.decoder.last_status]
        problems = self.invariant_problems(ev, statuses)
        if problems:
            raise AssertionError(f"linktype {linktype} frame {frame.hex()}: {problems}")
        rows = [
            (
                int(ev.kind[i]),
                (int(ev.src_hi[i]), int(ev.src_lo[i])),
                (int(ev.dst_hi[i]), int(ev.dst_lo[i])),
                int(ev.dport[i]),
                int(ev.qtype[i]),
                bytes(ev.names[i, : ev.name_lens[i]]),
            )
            for i in range(ev.n)
        ]
        return statuses[0], rows

    def __call__(self, data: bytes) -> None:
        linktype, frame = self.split(data)
        kernel = self.kernel(linktype, frame)
        ref = self.reference_decode(linktype, frame)
        self.n_inputs += 1
        self.statuses[kernel[0]] = self.statuses.get(kernel[0], 0) + 1
        if kernel != ref:
            self.record(linktype, frame, kernel, ref)
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

    def record(self, linktype: int, frame: bytes, kernel: tuple, ref: tuple) -> None:  # type: ignore[type-arg]
        if kernel[1] == ref[1] and {kernel[0], ref[0]} == self.precedence:
            self.n_known += 1
            return
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
    """The corpus and a sample of the capture frames, as atheris input files."""
    from decode_compare import capture_frames, corpus

    frames = [(int(e["linktype"]), bytes.fromhex(e["hex"])) for e in corpus()]
    captured = [(f.linktype, f.data) for f in capture_frames(max_len=1500)]
    relevant = [f for f in captured if fuzzer.reference_decode(*f)[0] != 1]
    step = max(1, len(relevant) // MAX_CAPTURE_SEEDS)
    frames += relevant[::step]
    for linktype, frame in frames:
        data = bytes((fuzzer.linktypes.index(linktype),)) + frame
        name = hashlib.sha1(data).hexdigest()
        (seeds_dir / name).write_bytes(data)
    return len(frames)


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    if not args.jit:
        os.environ["NUMBA_DISABLE_JIT"] = "1"
    sys.path.insert(0, str(ROOT / "tests"))
    import atheris

    with atheris.instrument_imports(include=["wormwatch"]):
        import wormwatch.decode
        import wormwatch.kernels.decode  # noqa: F401

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wormwatch-fuzz-"))
    seeds = workdir / "corpus"
    seeds.mkdir(parents=True, exist_ok=True)
    fuzzer = Fuzzer(workdir, runs=args.runs, seconds=args.seconds)
    n_seeds = write_seeds(fuzzer, seeds)
    print(f"workdir {workdir}  seeds {n_seeds}  jit {'on' if args.jit else 'off'}", flush=True)
    libfuzzer = [
        sys.argv[0],
        str(seeds),
        f"-artifact_prefix={workdir}/",
        "-max_len=2048",
        f"-seed={args.seed}",
        "-print_final_stats=0",
    ]
    atheris.Setup(libfuzzer, fuzzer)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
