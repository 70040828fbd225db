"""The pipeline on real files: the demo story found, one compiled signature per kernel."""

from __future__ import annotations

from wormwatch.config import load_config
from wormwatch.kernels import aggregate as agg_kernels
from wormwatch.kernels import classify as cls_kernels
from wormwatch.kernels import counting as count_kernels
from wormwatch.kernels import decode as dec_kernels
from wormwatch.pipeline import Pipeline
from wormwatch.source.pcapfile import open_replay

from testkit.paths import DEMO, DEMO_CONFIG


def test_demo_story_is_found() -> None:
    result = Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo").run(
        open_replay([str(DEMO)])
    )
    flagged = {v.state.addr: set(v.verdict.verdicts) for v in result.hosts if v.verdict.verdicts}
    assert flagged == {
        "192.0.2.66": {"keyword-storm"},
        "192.0.2.77": {"mx-client"},
        "192.0.2.88": {"smb-scan"},
        "192.0.2.99": {"mx-client", "smb-scan", "bot-sync"},
    }
    assert result.hosts[0].state.addr == "192.0.2.99"


def test_kernels_compile_one_signature_each_after_a_replay() -> None:
    Pipeline(load_config(None), source_name="demo").run(open_replay([str(DEMO)]))
    kernels = [
        dec_kernels.decode_packets,
        cls_kernels.match_keywords,
        agg_kernels.table_upsert,
        count_kernels.flag_events,
        count_kernels.count_events,
        count_kernels.pick_samples,
        count_kernels.touch_hosts,
        count_kernels.count_answer_events,
    ]
    for kernel in kernels:
        assert len(kernel.signatures) == 1, (kernel, kernel.signatures)
