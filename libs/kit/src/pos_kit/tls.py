"""TLS from mounted certificate files: gRPC server and channel credentials, NATS and HTTPS
contexts, and the PostgreSQL connection parameters.

Every path comes from settings (GRPC_TLS_*, NATS_TLS_CA, DATABASE_SSL*, HTTP_TLS_*); with none set
a process speaks plaintext, which is what the local platform does on loopback. On Kubernetes the
files are Secrets written by cert-manager and CloudNativePG and mounted read-only (k8s/README.md).

Rotation: cert-manager renews a certificate before it expires and the kubelet replaces the
mounted files. A gRPC server reads its certificate again on the next handshake after the files
change, and the gateway's HTTPS context reloads likewise, so a renewal needs no restart. What a
client trusts (the CA) is read once at start: a new CA means a rolling restart.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc

log = logging.getLogger(__name__)


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def _stamp(*paths: str) -> tuple[float, ...]:
    """What tells us that a mounted file was replaced: the kubelet swaps a symlink, so the
    modification time (and inode) of the resolved file changes."""
    stamps: list[float] = []
    for path in paths:
        stat = os.stat(path)
        stamps += [stat.st_mtime, float(stat.st_ino)]
    return tuple(stamps)


@dataclass(frozen=True)
class GrpcTls:
    """The files a process uses for gRPC: its own certificate and key (a server), and the CA
    that signed its callees' certificates (a client)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @property
    def serves(self) -> bool:
        return self.cert is not None and self.key is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials that read the certificate again after the files change, so a renewed
        certificate is served from the next connection on without a restart."""
        assert self.cert is not None and self.key is not None
        cert, key = self.cert, self.key

        def configuration() -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration([(_read(key), _read(cert))])

        loaded = [_stamp(cert, key)]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            try:
                now = _stamp(cert, key)
                if now == loaded[0]:
                    return None
                renewed = configuration()
            except (OSError, ValueError):
                # Mid-swap or unreadable: keep serving the certificate we have.
                log.warning("could not reload the gRPC certificate; keeping the current one")
                return None
            loaded[0] = now
            log.info("gRPC certificate reloaded")
            return renewed

        return grpc.dynamic_ssl_server_credentials(
            configuration(), fetch, require_client_authentication=False
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Verify the server against the CA (or the system's roots without one). A process with
        a certificate of its own presents it, should a server ask for one."""
        root = _read(self.ca) if self.ca else None
        if self.serves:
            assert self.cert is not None and self.key is not None
            return grpc.ssl_channel_credentials(
                root_certificates=root,
                private_key=_read(self.key),
                certificate_chain=_read(self.cert),
            )
        return grpc.ssl_channel_credentials(root_certificates=root)


def client_context(ca: str | None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name against `ca`."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class ReloadingServerContext:
    """An HTTPS server context whose certificate is loaded again when its files change.
    `SSLContext.load_cert_chain` on a live context takes effect for the next handshake."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(cert, key)
        self._stamp = _stamp(cert, key)

    def reload_if_changed(self) -> bool:
        try:
            now = _stamp(self.cert, self.key)
            if now == self._stamp:
                return False
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError):
            log.warning("could not reload the HTTPS certificate; keeping the current one")
            return False
        self._stamp = now
        log.info("HTTPS certificate reloaded")
        return True


def database_url_with_tls(url: str, sslmode: str | None, sslrootcert: str | None) -> str:
    """The URL with libpq's sslmode and sslrootcert in its query, which psycopg (directly, or
    through SQLAlchemy and Alembic) passes on to libpq. A URL from an operator's Secret (such as
    CloudNativePG's `uri`) carries neither, so they come from settings."""
    if sslmode is None and sslrootcert is None:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if sslmode is not None:
        query["sslmode"] = sslmode
    if sslrootcert is not None:
        query["sslrootcert"] = sslrootcert
    return urlunsplit(parts._replace(query=urlencode(query)))
