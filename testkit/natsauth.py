"""Throwaway credentials for the broker tests: a TLS CA and broker certificate,
and a NATS decentralized-auth chain (operator, account, user JWTs and the
user's ``.creds`` file), all made at test time.

TLS material comes from ``trustme``. The JWTs follow the NATS JWT v2 format:
``base64url(header).base64url(claims).base64url(signature)``, signed with the
issuer's ed25519 nkey (``alg: ed25519-nkey``), the claims' ``jti`` a base32
SHA-256 of the unsigned claims. The broker trusts the operator and is given
the account JWT through a preloaded memory resolver.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys
import trustme

UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    def server_block(self, *, verify_clients: bool = False) -> str:
        """The broker config's ``tls`` block; with ``verify_clients`` a client
        must present a certificate signed by the same CA."""
        verify = f', ca_file: "{self.ca}", verify: true' if verify_clients else ""
        return f'tls {{ cert_file: "{self.cert}", key_file: "{self.key}"{verify} }}'


def tls_files(folder: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A new CA, a certificate for ``host`` and a client certificate signed by
    it, as PEM files."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    files = TlsFiles(*(folder / n for n in ("ca.pem", "server.pem", "server.key",
                                            "client.pem", "client.key")))  # fmt: skip
    ca.cert_pem.write_to_path(str(files.ca))
    for leaf, cert, key in (
        (ca.issue_cert(host), files.cert, files.key),
        (ca.issue_cert("sensor.example"), files.client_cert, files.client_key),
    ):
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
    return files


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing}.{_b64(issuer.sign(signing.encode()))}"


@dataclass(frozen=True, slots=True)
class JwtAuth:
    operator_jwt: str
    accounts: dict[str, str]  # public key: JWT (the system account first)
    creds: Path

    def server_block(self) -> str:
        """Broker config: trust the operator; the accounts from a memory resolver
        (JetStream needs a system account)."""
        system = next(iter(self.accounts))
        preload = ", ".join(f"{pub}: {jwt}" for pub, jwt in self.accounts.items())
        return (
            f"operator: {self.operator_jwt}\n"
            f"system_account: {system}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{ {preload} }}\n"
        )


def jwt_auth(folder: Path, *, account_name: str = "WORMWATCH") -> JwtAuth:
    """An operator, an account with JetStream, and one user of it whose ``.creds``
    file is written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    operator = _new_key(nkeys.PREFIX_BYTE_OPERATOR)
    system = _new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    account = _new_key(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _new_key(nkeys.PREFIX_BYTE_USER)
    op_pub, acct_pub = operator.public_key.decode(), account.public_key.decode()
    limits = {
        "subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED, "imports": UNLIMITED,
        "exports": UNLIMITED, "wildcards": True, "conn": UNLIMITED, "leaf": UNLIMITED,
        "mem_storage": UNLIMITED, "disk_storage": UNLIMITED, "streams": UNLIMITED,
        "consumer": UNLIMITED,
    }  # fmt: skip
    operator_jwt = _jwt(operator, op_pub, "test-operator", {"type": "operator"})
    sys_pub = system.public_key.decode()
    system_jwt = _jwt(operator, sys_pub, "SYS", {"type": "account"})
    account_jwt = _jwt(operator, acct_pub, account_name, {"type": "account", "limits": limits})
    user_jwt = _jwt(
        account,
        user.public_key.decode(),
        "sensor",
        {"type": "user", "pub": {}, "sub": {}, "subs": UNLIMITED, "data": UNLIMITED,
         "payload": UNLIMITED},
    )  # fmt: skip
    creds = folder / "sensor.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    return JwtAuth(operator_jwt, {sys_pub: system_jwt, acct_pub: account_jwt}, creds)
