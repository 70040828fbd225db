"""Refusing a broker that does not offer TLS when TLS is asked for.

In: the broker URL of a config that asks for TLS (a ``tls://`` URL, or a
``ca_file``/``cert_file``). Out: nothing, or one
:class:`~wormwatch.errors.WormwatchError` line. nats-py upgrades to TLS only
when the server's INFO says ``tls_required``: against a broker without TLS it
went on in plain text, credentials and deltas included, without a word.
The INFO line (sent in the clear by nats-server before any TLS) is read here,
before the client sends anything. Also quiets asyncio's warning at each close of a TLS
broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import urllib.parse

from wormwatch.errors import WormwatchError
from wormwatch.text import escape_text

DEFAULT_PORT = 4222


class _QuietTlsEof(logging.Filter):
    """asyncio's warning each time a TLS broker closes on nats-py: noise beside our line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())


async def _info(host: str, port: int, timeout_s: float) -> dict[str, object] | None:
    """The broker's INFO fields, or None when they cannot be read (the client's
    own connection then says what is wrong)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError):
        return None
    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    op, _sep, body = line.decode("utf-8", "replace").partition(" ")
    if op.upper() != "INFO":
        return None
    with contextlib.suppress(ValueError):
        fields = json.loads(body)
        if isinstance(fields, dict):
            return fields
    return None


async def require_tls(url: str, timeout_s: float = 5.0) -> None:
    """Raise when the broker at ``url`` answers without requiring TLS."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"nats://{url}")
    host, port = parts.hostname or "", parts.port or DEFAULT_PORT
    info = await _info(host, port, timeout_s)
    if info is not None and not info.get("tls_required"):
        raise WormwatchError(
            f"the broker at {escape_text(host)}:{port} does not offer TLS, which the config "
            "asks for (tls:// URL, [cluster] ca_file or cert_file): nothing was sent; "
            "enable tls in the server's config, or use nats:// without the TLS files"
        )
