"""The tests' own layout: every source module has its tests in one place you can guess.

``src/wormwatch/<path>/<name>.py`` is tested in ``tests/<path>/test_<name>.py`` (a
package's ``__init__`` in ``tests/<path>/test_<package>.py``); a numba kernel module is
tested with its wrapper (``kernels/decode.py`` in ``tests/test_decode.py``), as the
kernel and its slow reference are compared there. Modules whose behaviour is tested
through another module's file are listed below with that file and why; a new module
needs its own test file or a line here. Modules with no function or class (tables of
constants, re-exports) need neither. Whole-run and cross-module tests live in
``tests/scenarios/``; what tests and scripts share lives in ``testkit/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from testkit.paths import REPO

SRC = REPO / "src" / "wormwatch"
TESTS = REPO / "tests"

# module (relative to src/wormwatch) -> (test file relative to tests/, why there)
TESTED_ELSEWHERE: dict[str, tuple[str, str]] = {
    "aggregate/aggregator.py": ("test_aggregate.py", "the package's one public class"),
    "aggregate/bins.py": ("test_aggregate.py", "rows per (host, bin), through Aggregator"),
    "aggregate/hosts.py": ("test_aggregate.py", "the host table, through Aggregator"),
    "aggregate/readout.py": ("test_aggregate.py", "host states read out of Aggregator"),
    "aggregate/columns.py": ("test_aggregate.py", "the per-batch column work of an ingest"),
    "signals.py": ("test_detect.py", "each signal fires through detect.evaluate"),
    "botsync.py": ("test_detect.py", "the bot-sync signal, through detect"),
    "sync.py": ("test_detect.py", "MX/SYN correlation, through bot-sync"),
    "periods.py": ("test_detect.py", "active periods, through the signals"),
    "collector.py": ("scenarios/test_startup.py", "held around the CLI start-up"),
    "source/bounded.py": ("test_runner.py", "a run stopped before its source opened, --duration"),
    "health.py": ("test_pipeline.py", "the run's snapshot and counters"),
    "feed.py": ("scenarios/test_invariance.py", "one thread or two give the same bytes"),
    "tables.py": ("test_aggregate.py", "the keyed tables under the aggregate"),
    "tomltable.py": ("test_config.py", "the TOML reader behind every config error"),
    "dnstcp.py": ("test_decode.py", "DNS over TCP flow state, through the decoder"),
    "errors.py": ("test_cli.py", "one error line per problem at the CLI"),
    "aggregate/export.py": ("test_delta.py", "the delta export"),
    "aggregate/merge.py": ("test_delta.py", "merging deltas into an aggregate"),
    "aggregate/applied.py": ("test_delta.py", "the merge's record of applied deltas"),
    "aggregate/cell.py": ("test_delta.py", "one bin's aggregate, through the delta export"),
    "aggregate/sent.py": ("test_delta.py", "the export's record of sample names sent"),
    "kernels/eventlog.py": ("present/sinks/test_events.py", "the event-log line kernel"),
    "kernels/merge.py": ("source/test_merge.py", "the k-way merge of capture files"),
    "kernels/prefilter.py": ("kernels/test_pcapwalk.py", "the walkers' test, frame by frame"),
    "kernels/counting.py": ("test_aggregate.py", "a batch counted, through Aggregator"),
    "kernels/cacheload.py": ("test_warmup.py", "cache loads and checks, through warm_up"),
    "kernels/dnstcp.py": ("test_decode.py", "DNS over TCP segments"),
    "kernels/layers.py": ("test_decode.py", "link, IP and transport, inlined in the decoder"),
    "kernels/dnsmsg.py": ("test_decode.py", "the DNS message, inlined in the decoder"),
    "kernels/fragpool.py": ("test_reassemble.py", "the slot pool of the reassembly kernel"),
    "kernels/probing.py": ("test_reassemble.py", "index deletion, through both slot tables"),
    "cluster/broker.py": ("cluster/test_run.py", "a NATS server for the sensors"),
    "cluster/publisher.py": ("cluster/test_run.py", "a sensor's publisher, end to end"),
    "cluster/sensor.py": ("cluster/test_run.py", "the sensor mode, end to end"),
    "cluster/settings.py": ("cluster/test_central.py", "the [cluster] configuration"),
    "cluster/top.py": ("cluster/test_central.py", "central's ranking"),
    "cluster/tlscheck.py": ("cluster/test_broker.py", "TLS asked of a broker without it"),
    "cluster/view.py": ("cluster/test_central.py", "the cluster view"),
    "present/live/cluster.py": ("cluster/test_run.py", "`wormwatch view` on a live broker"),
    "present/live/detail.py": ("present/live/test_table.py", "detail panel goldens"),
    "present/live/footer.py": ("present/live/test_table.py", "footer and no-rows goldens"),
    "present/live/terminal.py": ("present/live/test_keys.py", "raw keys on a real pty"),
    "present/live/view.py": ("present/live/test_keys.py", "view-state transitions"),
    "present/report/data.py": ("present/report/test_write.py", "the report's inputs"),
    "present/report/htmlkit.py": ("present/report/test_write.py", "escaped HTML pieces"),
    "present/report/page.py": ("present/report/test_write.py", "the HTML page"),
    "present/report/plots.py": ("present/report/test_write.py", "the figures"),
    "present/report/prefixes.py": ("present/report/test_write.py", "prefix statistics"),
    "present/report/sections.py": ("present/report/test_write.py", "findings sections"),
    "present/sinks/metric_families.py": ("present/sinks/test_metrics.py", "scraped"),
    "present/sinks/text.py": ("test_cli.py", "the text summary on stdout"),
    "source/__init__.py": ("source/test_pcapfile.py", "the Source protocol, by its sources"),
    "source/fanout.py": ("source/test_live.py", "PACKET_FANOUT workers in namespaces"),
    "source/fileheader.py": ("source/test_pcapfile.py", "capture-file checks"),
    "source/handle.py": ("source/test_live.py", "pcapy handles"),
    "source/pcapng.py": ("source/test_pcapfile.py", "pcapng sections and interfaces"),
    "source/privileges.py": ("source/test_live.py", "the privilege drop"),
    "source/mapping.py": ("source/test_merge.py", "files mapped alone or side by side"),
    "source/stdin.py": ("source/test_pcapfile.py", "standard input"),
}


def _defines_code(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for n in tree.body
    )


def _own_test_files(module: Path) -> list[Path]:
    """Where a module's own tests would be: the mirrored path (and a kernel's wrapper)."""
    rel = module.relative_to(SRC)
    if rel.name == "__init__.py":
        own = TESTS.joinpath(*rel.parts[:-2], f"test_{rel.parts[-2]}.py")
    else:
        own = TESTS.joinpath(*rel.parts[:-1], f"test_{rel.stem}.py")
    if rel.parts[0] == "kernels":
        return [own, TESTS / f"test_{rel.stem}.py"]
    return [own]


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__main__.py" and _defines_code(p))


def test_every_module_has_its_tests_in_one_known_place() -> None:
    missing = []
    for module in _modules():
        rel = str(module.relative_to(SRC))
        if not any(p.is_file() for p in _own_test_files(module)) and rel not in TESTED_ELSEWHERE:
            missing.append(rel)
    assert not missing, (
        f"no tests/<path>/test_<name>.py for {missing}: add one, or a line to TESTED_ELSEWHERE"
    )


def test_the_files_named_for_other_modules_exist() -> None:
    modules = {str(m.relative_to(SRC)) for m in _modules()}
    assert set(TESTED_ELSEWHERE) <= modules, set(TESTED_ELSEWHERE) - modules
    for module, (test_file, why) in TESTED_ELSEWHERE.items():
        assert (TESTS / test_file).is_file(), (module, test_file)
        assert why, module


def test_every_test_file_is_named_for_a_module_or_is_a_scenario() -> None:
    """tests/<path>/test_<name>.py outside scenarios/ names a module (or a package)."""
    stray = []
    for test_file in TESTS.rglob("test_*.py"):
        rel = test_file.relative_to(TESTS)
        if rel.parts[0] == "scenarios":
            continue
        name = rel.stem.removeprefix("test_")
        folder = SRC.joinpath(*rel.parts[:-1])
        if not ((folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()):
            stray.append(str(rel))
    assert not stray, f"not named for a module (move to tests/scenarios/?): {stray}"
