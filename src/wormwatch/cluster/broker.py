"""Connecting to the NATS broker, and the JetStream objects a cluster uses.

In: a :class:`~wormwatch.cluster.settings.ClusterConfig`. Out: a connected
client and the streams and buckets, created when missing. Broker problems
the operator can fix (refused credentials, no TLS, no JetStream) become one
:class:`~wormwatch.errors.WormwatchError` line.

JetStream features used (nats-server 2.10 or newer: consumers with several filter
subjects): file streams with a duplicate window (``Nats-Msg-Id``), durable pull
consumers, key-value buckets; pull fetches sized to the broker's limits.
"""

from __future__ import annotations

import base64
import dataclasses
import ssl
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
import nkeys
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from wormwatch.cluster.settings import (
    ALERT_STREAM,
    ALERT_SUBJECT,
    CHECKPOINT_BUCKET,
    DELTA_STREAM,
    DELTA_SUBJECT,
    TOP_BUCKET,
    ClusterConfig,
)
from wormwatch.cluster.tlscheck import require_tls
from wormwatch.errors import WormwatchError
from wormwatch.text import escape_text

MIN_SERVER = (2, 10)
URL_SCHEMES = ("nats", "tls")
# JetStream API requests wait this long: a loaded broker host answers slowly,
# and a timeout is not a reason to stop sensing or merging
JS_TIMEOUT_S = 20.0
FETCH = 256  # messages one fetch asks for, at most
# Bytes one fetch may have the broker push at once. The central reads nothing from
# its socket while it applies a batch, and nats-server closes a client whose unread
# bytes pass its max_pending (64 MB by default) as a slow consumer: 256 parts of a
# busy bin (~100 MB) did, and what was in flight came again after the ack wait (30 s).
FETCH_BYTES = 24 << 20


def stderr_line(line: str) -> None:
    """How a sensor's publisher and a central say what goes wrong with the cluster."""
    print(f"wormwatch: cluster: {line}", file=sys.stderr, flush=True)


def describe(err: BaseException, said: Sequence[str] = ()) -> str:
    """One line for a broker error, naming the fix where there is one. ``said``: what the
    broker said since we connected (a request refused for want of permissions times out)."""
    if said and isinstance(err, TimeoutError):
        return said[-1]
    text = str(err) or type(err).__name__
    low = text.lower()
    if isinstance(err, ssl.SSLError) and "CERTIFICATE_REQUIRED" in text:
        return "the broker requires a client certificate: set [cluster] cert_file and key_file"
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate is not trusted ({err.verify_message}); "
            "set [cluster] ca_file to the CA that signed it"
        )
    if "authorization" in low or "authentication" in low or "permissions" in low:
        return (
            f"the broker refused our credentials ({text}); "
            "check [cluster] user/password, token or creds_file"
        )
    if isinstance(err, nats.errors.NoServersError | ConnectionRefusedError | OSError):
        return f"cannot reach the broker ({text})"
    if isinstance(err, nats.js.errors.ServiceUnavailableError | nats.errors.NoRespondersError):
        return "the broker has no JetStream (start nats-server with -js, docs/CLUSTER.md)"
    return text


def _readable(key: str, path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise WormwatchError(f"[cluster] {key}: {err.strerror}: {path}") from None


def _tls(cfg: ClusterConfig) -> ssl.SSLContext | None:
    if not (cfg.url.startswith("tls://") or cfg.ca_file or cfg.cert_file):
        return None
    for key in ("ca_file", "cert_file", "key_file"):
        _readable(key, getattr(cfg, key))
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.cert_file:
            ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    except (OSError, ssl.SSLError) as err:
        raise WormwatchError(
            f"[cluster] TLS files ca_file/cert_file/key_file: {err} (PEM files expected)"
        ) from None
    return ctx


def _creds_block(text: bytes, label: bytes) -> bytes | None:
    """The line after ``-----BEGIN <label>-----`` in a ``.creds`` file."""
    lines = text.splitlines()
    for k, line in enumerate(lines[:-1]):
        if b"BEGIN " + label in line:
            return lines[k + 1].strip()
    return None


def _creds_callbacks(path: str) -> dict[str, Any]:
    """nats-py's JWT and nonce-signing callbacks for a ``.creds`` file, read
    once here: a live sensor drops its privileges after start, and the file
    (root's, mode 0600) must still serve every later reconnection."""
    try:
        with open(path, "rb") as f:
            text = f.read(65536)
    except OSError as err:
        raise WormwatchError(f"[cluster] creds_file: {err.strerror}: {path}") from None
    jwt = _creds_block(text, b"NATS USER JWT")
    seed = _creds_block(text, b"USER NKEY SEED")
    if not jwt or not seed:
        raise WormwatchError(
            f"[cluster] creds_file {path} is not a NATS .creds file "
            "(it needs a NATS USER JWT and a USER NKEY SEED block, as `nsc` writes them)"
        )

    def user_jwt_cb() -> bytearray:
        return bytearray(jwt)

    def signature_cb(nonce: str) -> bytes:
        pair = nkeys.from_seed(bytearray(seed))
        try:
            return base64.b64encode(pair.sign(nonce.encode()))
        finally:
            pair.wipe()

    return {"user_jwt_cb": user_jwt_cb, "signature_cb": signature_cb}


def connect_options(cfg: ClusterConfig, *, name: str) -> dict[str, Any]:
    """Keyword arguments of :func:`nats.connect` for this config, with the TLS
    and creds files read now; a missing or unusable one raises
    :class:`WormwatchError` here."""
    opts: dict[str, Any] = {
        "servers": [cfg.url],
        "name": name,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
    }
    if cfg.user is not None:
        opts["user"], opts["password"] = cfg.user, cfg.password
    if cfg.token is not None:
        opts["token"] = cfg.token
    if cfg.creds_file is not None:
        opts.update(_creds_callbacks(cfg.creds_file))
    tls = _tls(cfg)
    if tls is not None:
        opts["tls"] = tls
    return opts


def check_settings(cfg: ClusterConfig) -> None:
    """Fail at start, in one line, when the broker URL or a TLS or creds file of the
    config cannot be used (rather than retrying a connection that can never work)."""
    _check_url(cfg.url)
    connect_options(cfg, name="")


def _check_url(url: str) -> None:
    """A URL nats-py can use: ``nats://HOST[:PORT]``, ``tls://...`` or a bare host.
    Others failed late and obscurely: ``--publish http://broker:4222`` waited out
    ``publish_timeout_s`` on "Name or service not known" and exited 3."""
    try:
        parts = urllib.parse.urlsplit(url if "://" in url else f"nats://{url}")
        is_good = parts.scheme in URL_SCHEMES and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port past 65535, an unclosed [IPv6
        is_good = False
    if not is_good or any(c.isspace() for c in url):
        raise WormwatchError(
            f"broker URL {escape_text(url)!r}: use nats://HOST:PORT or tls://HOST:PORT "
            "(--publish, --nats or [cluster] url)"
        )


async def connect(
    cfg: ClusterConfig,
    *,
    name: str,
    on_error: Callable[[str], None] | None = None,
    on_state: Callable[[bool], None] | None = None,
    options: dict[str, Any] | None = None,
) -> Client:
    """A connected client; raises :class:`WormwatchError` when the first
    connection fails (refused, untrusted, unreachable: one line, no retry
    loop), later ones reconnect on their own. ``options``: those of
    :func:`connect_options`, when read earlier (before a privilege drop)."""
    is_up = False
    first_errors: list[Exception] = []

    async def error_cb(err: Exception) -> None:
        # the first connection's error is the one raised below, said once
        if not is_up:
            first_errors.append(err)
        elif on_error is not None:
            on_error(describe(err))

    def state(up: bool) -> Callable[[], Awaitable[None]]:
        async def cb() -> None:
            if on_state is not None:
                on_state(up)

        return cb

    _check_url(cfg.url)
    opts = options if options is not None else connect_options(cfg, name=name)
    if "tls" in opts:
        await require_tls(cfg.url)
    try:
        # nats-py retries a first connection for ever, even without reconnects, while
        # max_reconnect_attempts is negative: a central or view then hung on a broker
        # that was down, deaf to Ctrl-C and --duration; 1 gives up after two tries
        nc = await nats.connect(
            **{**opts, "allow_reconnect": False, "max_reconnect_attempts": 1},
            error_cb=error_cb,
            disconnected_cb=state(False),
            reconnected_cb=state(True),
        )
    except (nats.errors.Error, OSError, TimeoutError) as err:
        # "no servers available" says less than the last try's own error
        line = describe(first_errors[-1] if first_errors else err)
        if "tls" in opts and cfg.cert_file is None and _dropped(line):
            # a broker that verifies clients drops one without a certificate after the
            # handshake: the TLS alert saying so may come first (above) or not at all,
            # and our CONNECT may meet the closed socket (lost, reset or broken pipe)
            line += (
                "; if the broker requires client certificates (tls verify), "
                "set [cluster] cert_file and key_file"
            )
        raise WormwatchError(line) from None
    # nats-py reads its options at each reconnect: from now on, reconnect
    nc.options["allow_reconnect"] = opts["allow_reconnect"]
    nc.options["max_reconnect_attempts"] = opts["max_reconnect_attempts"]
    is_up = True
    return nc


def _dropped(line: str) -> bool:
    """The broker closed a connection it had accepted (not refused, not untrusted)."""
    words = ("connection lost", "broken pipe", "connection reset", "eof")
    return any(word in line.lower() for word in words)


def check_version(nc: Client) -> None:
    """Refuse a server older than the JetStream features we use."""
    version = str(nc.connected_server_version)
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return
    if (major, minor) < MIN_SERVER:
        raise WormwatchError(
            f"nats-server {version} is too old: wormwatch needs "
            f"{MIN_SERVER[0]}.{MIN_SERVER[1]} or newer"
        )


def fetch_batch(max_payload: int) -> int:
    """Messages per fetch: :data:`FETCH`, or fewer, so that a fetch of the largest
    messages the broker takes stays within :data:`FETCH_BYTES` (24 at the default
    ``max_payload`` of 1 MiB; two fetches in flight, one of them a lingering pull
    the client gave up on, stay under the broker's default ``max_pending``)."""
    return max(1, min(FETCH, FETCH_BYTES // max(max_payload, 1)))


def pending_bytes(nc: Client, batch: int) -> int:
    """Room for two whole fetches of ``batch`` of the largest messages the broker takes:
    nats-py drops a message that would take a subscription past its pending bytes
    (256 MB by default) as a slow consumer, and the broker sends it again only after
    ``ack_wait``: with ~1 MB deltas, one bin of 8 sensors x 100,000 hosts is over
    that, and its lost parts arrived 30 s late. A pull consumer holds at most the
    messages of the fetches it asked for, so this bound is the real one."""
    return 2 * batch * max(int(nc.max_payload), 1 << 20)


async def ensure_streams(
    js: JetStreamContext, cfg: ClusterConfig, window_s: int, said: Sequence[str] = (), *,
    owner: bool = False,
) -> None:  # fmt: skip
    """The delta and alert streams, created when missing, and (``owner``: a central) their
    limits set to the config's; ``said``: see :func:`describe`."""
    retention = cfg.retention_s or float(window_s)
    streams = (
        StreamConfig(
            name=DELTA_STREAM,
            subjects=[f"{DELTA_SUBJECT}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=retention,
            duplicate_window=min(cfg.duplicate_window_s, retention),
            discard=DiscardPolicy.OLD,
        ),
        StreamConfig(
            name=ALERT_STREAM,
            subjects=[f"{ALERT_SUBJECT}.>"],
            storage=StorageType.FILE,
            max_age=retention,
            duplicate_window=min(cfg.duplicate_window_s, retention),
        ),
    )
    try:
        for stream in streams:
            try:
                old = (await js.stream_info(str(stream.name))).config
            except nats.js.errors.NotFoundError:
                await js.add_stream(stream)
                continue
            age, window = stream.max_age, stream.duplicate_window
            if owner and (old.max_age, old.duplicate_window) != (age, window):
                # a changed retention_s went unheeded while the stream existed
                await js.update_stream(
                    dataclasses.replace(old, max_age=age, duplicate_window=window)
                )
    except (nats.errors.Error, TimeoutError) as err:
        raise WormwatchError(describe(err, said)) from None


async def durable_pull(
    js: JetStreamContext,
    cfg: ClusterConfig,
    window_s: int,
    *,
    key: str,
    subjects: list[str],
    pending_bytes_limit: int,
    said: Sequence[str] = (),
) -> tuple[JetStreamContext.PullSubscription, bool]:
    """The streams and a central's durable pull consumer ``key`` of ``subjects``, created
    when missing (a new one, or a broker that lost its store); a subscription, and if so."""
    await ensure_streams(js, cfg, window_s, said, owner=True)
    config = ConsumerConfig(
        durable_name=key,
        deliver_policy=DeliverPolicy.ALL,
        # explicit: a message a fetch gave up on (it came after the fetch's
        # expiry) is not acknowledged by a later one, and comes again
        ack_policy=AckPolicy.EXPLICIT,
        filter_subjects=subjects,
        max_ack_pending=4 * FETCH,
        ack_wait=30.0,
    )
    try:
        await js.consumer_info(DELTA_STREAM, key)
        created = False
    except nats.js.errors.NotFoundError:
        await js.add_consumer(DELTA_STREAM, config)
        created = True
    sub = await js.pull_subscribe_bind(
        durable=key, stream=DELTA_STREAM, pending_bytes_limit=pending_bytes_limit
    )
    return sub, created


async def bucket(js: JetStreamContext, name: str) -> KeyValue:
    """A key-value bucket, created when missing."""
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1)


async def buckets(js: JetStreamContext) -> tuple[KeyValue, KeyValue]:
    """(checkpoints, top hosts)."""
    return await bucket(js, CHECKPOINT_BUCKET), await bucket(js, TOP_BUCKET)
