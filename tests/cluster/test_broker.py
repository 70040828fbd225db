"""Reaching the broker: TLS with a CA file, a token, a NATS creds file (JWT
auth), against a real nats-server; refused or unusable settings are one line.

The CA, the broker certificate and the operator/account/user JWTs are made
at test time (:mod:`testkit.natsauth`). A sensor (``replay --publish``) and a
central go through each kind of authentication, and the central's merged
hosts equal the sensor's own summary of the same capture.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wormwatch.cluster import broker as broker_mod
from wormwatch.cluster.broker import connect_options, describe
from wormwatch.cluster.settings import ClusterConfig
from wormwatch.errors import WormwatchError

from testkit.natsauth import jwt_auth, tls_files
from testkit.natsbroker import BrokerPool, broker_pool
from testkit.natsrun import WORMWATCH, config, host_records, run, stop, wait_consumed
from testkit.paths import DEMO


@dataclass(frozen=True, slots=True)
class Secured:
    url: str
    toml: str  # the [cluster] keys a process needs
    client: dict[str, Any]  # the same for the test's own nats.connect


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[BrokerPool]:
    with broker_pool(tmp_path) as pool:
        yield pool


def secured(brokers: BrokerPool, folder: Path, how: str) -> Secured:
    """A broker that needs ``how`` (tls, mutual-tls, token or creds) and how to reach it."""
    if how == "tls":
        tls = tls_files(folder / "tls")
        broker = brokers.start(auth=tls.server_block())
        return Secured(
            f"tls://127.0.0.1:{broker.port}",
            f'ca_file = "{tls.ca}"\n',
            {"tls": ssl.create_default_context(cafile=str(tls.ca))},
        )
    if how == "mutual-tls":
        tls = tls_files(folder / "tls")
        broker = brokers.start(auth=tls.server_block(verify_clients=True))
        ctx = ssl.create_default_context(cafile=str(tls.ca))
        ctx.load_cert_chain(str(tls.client_cert), str(tls.client_key))
        keys = f'ca_file = "{tls.ca}"\n'
        keys += f'cert_file = "{tls.client_cert}"\nkey_file = "{tls.client_key}"\n'
        return Secured(f"tls://127.0.0.1:{broker.port}", keys, {"tls": ctx})
    if how == "token":
        broker = brokers.start(auth='authorization { token: "s3cret-t0ken" }')
        return Secured(broker.url, 'token = "s3cret-t0ken"\n', {"token": "s3cret-t0ken"})
    auth = jwt_auth(folder / "jwt")
    broker = brokers.start(auth=auth.server_block())
    return Secured(
        broker.url, f'creds_file = "{auth.creds}"\n', {"user_credentials": str(auth.creds)}
    )


def sense(url: str, cfg: Path, summary: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("replay", str(DEMO), "--publish", url, "--sensor", "s0", "--no-tui",
               "--config", str(cfg), "--summary", str(summary), *extra)  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("how", ["tls", "mutual-tls", "token", "creds"])
def test_a_sensor_and_a_central_work_through_each_kind_of_auth(
    brokers: BrokerPool, tmp_path: Path, how: str
) -> None:
    broker = secured(brokers, tmp_path, how)
    cfg = config(tmp_path / "c.toml", "[cluster]\n" + broker.toml)
    local = tmp_path / "local.jsonl"
    done = sense(broker.url, cfg, local)
    assert done.returncode == 0, done.stderr  # everything published was acknowledged
    merged = tmp_path / "merged.jsonl"
    args = ["central", "--nats", broker.url, "--no-tui", "--config", str(cfg)]
    central = subprocess.Popen(
        [*WORMWATCH, *args, "--summary", str(merged)], stderr=subprocess.PIPE, text=True
    )
    wait_consumed(broker.url, ["central-0-15"], [central], **broker.client)
    stop(central)
    assert host_records(merged) == host_records(local)
    assert "192.0.2.99" in host_records(merged)


def test_an_untrusted_broker_certificate_is_one_line(brokers: BrokerPool, tmp_path: Path) -> None:
    tls = tls_files(tmp_path / "tls")
    other = tls_files(tmp_path / "other")  # a CA that did not sign the broker's certificate
    broker = brokers.start(auth=tls.server_block())
    url = f"tls://127.0.0.1:{broker.port}"
    cfg = config(
        tmp_path / "c.toml", f'[cluster]\nca_file = "{other.ca}"\npublish_timeout_s = 1.0\n'
    )
    local = tmp_path / "local.jsonl"
    done = sense(url, cfg, local)
    # the sensor says it once, keeps sensing, and its replay fails for the unsent deltas
    assert done.returncode == 3
    said = [line for line in error_lines(done.stderr) if "not trusted" in line]
    assert len(said) == 1, done.stderr
    assert "ca_file" in said[0]
    assert len(error_lines(done.stderr)) == 2, done.stderr  # and the replay's exit line
    assert "192.0.2.99" in host_records(local)
    for argv in (["central", "--no-tui", "--duration", "5"], ["view"]):
        refused = run(*argv, "--nats", url, "--config", str(cfg))
        assert refused.returncode == 2
        assert error_lines(refused.stderr) == [
            "wormwatch: error: the broker's TLS certificate is not trusted (unable to get "
            "local issuer certificate); set [cluster] ca_file to the CA that signed it"
        ]


def test_no_client_certificate_where_one_is_required_is_one_line(
    brokers: BrokerPool, tmp_path: Path
) -> None:
    tls = tls_files(tmp_path / "tls")
    broker = brokers.start(auth=tls.server_block(verify_clients=True))
    url = f"tls://127.0.0.1:{broker.port}"
    cfg = config(tmp_path / "c.toml", f'[cluster]\nca_file = "{tls.ca}"\n')
    refused = run("central", "--no-tui", "--nats", url, "--config", str(cfg))
    assert refused.returncode == 2
    assert len(error_lines(refused.stderr)) == 1, refused.stderr
    assert "set [cluster] cert_file and key_file" in refused.stderr


def test_a_missing_client_certificate_is_named_however_the_refusal_arrives() -> None:
    # TLS 1.3: the broker's alert, or only the closed connection, depending on timing
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate")
    assert describe(alert) == (
        "the broker requires a client certificate: set [cluster] cert_file and key_file"
    )


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        ("cannot reach the broker (nats: connection lost)", True),
        ("cannot reach the broker ([Errno 32] Broken pipe)", True),
        ("cannot reach the broker ([Errno 104] Connection reset by peer)", True),
        ("cannot reach the broker (nats: unexpected EOF)", True),
        ("cannot reach the broker ([Errno 111] Connection refused)", False),
        ("nats: no servers available for connection", False),
    ],
)
def test_a_closed_tls_connection_gets_the_client_certificate_hint(line: str, dropped: bool) -> None:
    # how the broker's refusal reaches a client without a certificate depends on timing
    assert broker_mod._dropped(line) is dropped


def test_a_wrong_token_is_one_line_and_sensing_goes_on(brokers: BrokerPool, tmp_path: Path) -> None:
    broker = brokers.start(auth='authorization { token: "right" }')
    cfg = config(tmp_path / "c.toml", '[cluster]\ntoken = "wrong"\npublish_timeout_s = 1.0\n')
    local = tmp_path / "local.jsonl"
    done = sense(broker.url, cfg, local)
    assert done.returncode == 3
    said = [line for line in error_lines(done.stderr) if "credentials" in line]
    assert len(said) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "192.0.2.99" in host_records(local)
    refused = run("central", "--no-tui", "--nats", broker.url, "--config", str(cfg))
    assert refused.returncode == 2
    assert len(error_lines(refused.stderr)) == 1, refused.stderr
    assert "refused our credentials" in refused.stderr


@pytest.mark.parametrize("key", ["ca_file", "creds_file", "creds_not_creds", "creds_folder"])
def test_an_unusable_file_is_one_line_before_anything_starts(tmp_path: Path, key: str) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not a creds file\n")
    body = {
        "ca_file": (f'ca_file = "{tmp_path / "missing.pem"}"', "ca_file: No such file"),
        "creds_file": (f'creds_file = "{tmp_path / "gone.creds"}"', "creds_file: No such file"),
        "creds_not_creds": (f'creds_file = "{junk}"', "is not a NATS .creds file"),
        "creds_folder": (f'creds_file = "{tmp_path}"', "creds_file: Is a directory"),
    }[key]
    cfg = config(tmp_path / "c.toml", f"[cluster]\n{body[0]}\n")
    url = "nats://127.0.0.1:9"  # never reached: the settings fail first
    summary = str(tmp_path / "s.jsonl")
    for argv in (
        ["replay", str(DEMO), "--publish", url, "--sensor", "s0", "--no-tui", "--summary", summary],
        ["central", "--nats", url, "--no-tui"],
        ["view", "--nats", url],
    ):
        done = run(*argv, "--config", str(cfg))
        assert done.returncode == 2, done.stderr
        lines = error_lines(done.stderr)
        assert len(lines) == 1, done.stderr
        assert body[1] in lines[0]


def test_credentials_reach_the_client_options(tmp_path: Path) -> None:
    import base64

    import nkeys

    creds = jwt_auth(tmp_path).creds
    opts = connect_options(
        ClusterConfig(url="nats://127.0.0.1:4222", creds_file=str(creds), token="t"), name="x"
    )
    # the creds file is read once, now: the callbacks serve every (re)connection
    text = creds.read_text().splitlines()
    creds.unlink()
    assert opts["user_jwt_cb"]() == text[1].encode()
    user = nkeys.from_seed(bytearray(text[5].encode()))
    assert user.verify(b"nonce-1", base64.b64decode(opts["signature_cb"]("nonce-1")))
    assert opts["token"] == "t"
    assert "tls" not in opts
    tls = tls_files(tmp_path / "tls")
    opts = connect_options(ClusterConfig(url="tls://127.0.0.1:4222", ca_file=str(tls.ca)), name="x")
    assert isinstance(opts["tls"], ssl.SSLContext)


def test_a_broker_that_is_down_is_one_line_not_a_hang() -> None:
    """nats-py retried the first connection for ever (max_reconnect_attempts -1): a
    central or view on a broker that was down hung, deaf to Ctrl-C and --duration,
    and a sensor never said it was sensing locally."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = ClusterConfig(url=f"nats://127.0.0.1:{port}")

    async def attempt() -> None:
        await asyncio.wait_for(broker_mod.connect(cfg, name="test"), timeout=20)

    with pytest.raises(WormwatchError, match=rf"cannot reach the broker \(.*{port}"):
        asyncio.run(attempt())


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4222", "nats://127.0.0.1:99999", "nats://[::1", "nats://", "a b"]
)
def test_a_url_no_broker_can_have_is_one_line_at_start(url: str) -> None:
    """--publish http://broker:4222 waited out publish_timeout_s (120 s) on "Name or
    service not known" and exited 3; nats://[::1 was a ValueError traceback."""
    with pytest.raises(WormwatchError, match=r"^broker URL .*: use nats://HOST:PORT"):
        broker_mod.check_settings(ClusterConfig(url=url))


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:4222", "tls://broker.example:4222", "127.0.0.1", "nats://[::1]:1"]
)
def test_broker_urls_that_work(url: str) -> None:
    broker_mod.check_settings(ClusterConfig(url=url))


def test_tls_asked_of_a_broker_without_tls_is_one_line(brokers: BrokerPool, tmp_path: Path) -> None:
    """A tls:// URL to a broker that offers no TLS: nats-py went on in plain text
    (a token or password, and every delta, in the clear) and said nothing."""
    broker = brokers.start(auth='authorization { token: "s3cret-t0ken" }')
    url = f"tls://127.0.0.1:{broker.port}"
    cfg = config(
        tmp_path / "c.toml", '[cluster]\ntoken = "s3cret-t0ken"\npublish_timeout_s = 1.0\n'
    )
    local = tmp_path / "local.jsonl"
    done = sense(url, cfg, local)
    assert done.returncode == 3
    said = [line for line in error_lines(done.stderr) if "does not offer TLS" in line]
    assert len(said) == 1, done.stderr
    assert "192.0.2.99" in host_records(local)
    for argv in (["central", "--no-tui", "--duration", "5"], ["view"]):
        refused = run(*argv, "--nats", url, "--config", str(cfg))
        assert refused.returncode == 2, refused.stderr
        assert error_lines(refused.stderr) == [
            f"wormwatch: error: the broker at 127.0.0.1:{broker.port} does not offer TLS, "
            "which the config asks for (tls:// URL, [cluster] ca_file or cert_file): nothing "
            "was sent; enable tls in the server's config, or use nats:// without the TLS files"
        ]
    assert "s3cret" not in broker.log.read_text()


NO_JETSTREAM_RIGHTS = """authorization { users = [ { user: "ro", password: "pw", permissions: {
  publish: { allow: ["wormwatch.heartbeat.>"] }, subscribe: { allow: ["_INBOX.>", "wormwatch.>"] }
} } ] }"""


def test_a_user_without_the_rights_a_central_needs_is_told_so(
    brokers: BrokerPool, tmp_path: Path
) -> None:
    """A user the broker lets in but not at the JetStream API: the broker's
    permissions violation came as an asynchronous error nobody heard, and central
    and view said "cannot reach the broker (nats: timeout)" of a broker they had
    reached (the sensor, which hears it, said it right)."""
    broker = brokers.start(auth=NO_JETSTREAM_RIGHTS)
    cfg = config(tmp_path / "c.toml", '[cluster]\nuser = "ro"\npassword = "pw"\n')
    for argv in (["central", "--no-tui", "--duration", "5"], ["view"]):
        refused = run(*argv, "--nats", broker.url, "--config", str(cfg))
        assert refused.returncode == 2, refused.stderr
        (line,) = error_lines(refused.stderr)
        assert "permissions violation" in line, line
        assert "refused our credentials" in line, line
