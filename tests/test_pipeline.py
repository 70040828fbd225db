"""The pipeline on real files: the demo story found, one compiled signature per kernel."""

from __future__ import annotations

from wormwatch.config import load_config
from wormwatch.kernels import aggregate as agg_kernels
from wormwatch.kernels import classify as cls_kernels
from wormwatch.kernels import counting as count_kernels
from wormwatch.kernels import decode as dec_kernels
from wormwatch.model import HostView
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


def test_every_host_is_read_out_only_when_asked_for() -> None:
    """A replay that writes no summary and no report never reads every host out
    (the final snapshot reads the top ones); asked for, they are read once."""
    pipe = Pipeline(load_config(str(DEMO_CONFIG)), source_name="demo")
    limits: list[int | None] = []
    host_views = pipe.host_views

    def counted(limit: int | None = None) -> list[HostView]:
        limits.append(limit)
        return host_views(limit)

    pipe.host_views = counted  # type: ignore[method-assign]
    result = pipe.run(open_replay([str(DEMO)]))
    assert None not in limits
    hosts = result.hosts
    assert result.hosts is hosts
    assert limits.count(None) == 1
    assert len(hosts) == pipe.agg.n_hosts
    assert [v.state.addr for v in hosts] == [v.state.addr for v in pipe.judge.host_views(pipe.agg)]


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
