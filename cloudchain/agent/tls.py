"""The agent's TLS: its listener's context (TLS 1.2 or newer, the standard ssl module), the
names it answers to (its certificate's), a client certificate's subject; and the client's
connection to a cluster agent (imported by client.py for https:// only, so the unix socket
and loopback paths never load ssl).

- The Host a request names must be one the certificate was issued for (a DNS name or an IP
  address in its subjectAltName, with or without the port), or the address the agent listens
  on, so a browser led there by DNS rebinding, which names the attacker's host, is refused.
- With --tls-client-ca, a client without a certificate that CA signed is refused in the
  handshake; its subject (RFC 4514, as `openssl x509 -noout -subject -nameopt RFC2253` prints
  it) is what the access file may name.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path

from ..errors import CloudChainConfigError


def server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """A server context with the agent's certificate, requiring client certificates from
    client_ca when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise CloudChainConfigError(
            f"cannot load --tls-cert {cert} with --tls-key {key}: "
            f"{getattr(err, 'strerror', None) or getattr(err, 'reason', None) or err}"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as err:
            raise CloudChainConfigError(f"cannot load --tls-client-ca {client_ca}: "
                                        f"{getattr(err, 'strerror', None) or err}") from None  # fmt: skip
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def certificate_names(cert: str) -> list[str]:
    """The DNS names and IP addresses the certificate (the first in the file) is issued for;
    a certificate for none is refused."""
    from cryptography import x509

    try:
        loaded = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    except (OSError, ValueError) as err:
        raise CloudChainConfigError(f"cannot read --tls-cert {cert}: {err}") from None
    found: list[str] = []
    try:
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found += [name.lower() for name in names.get_values_for_type(x509.DNSName)]
        found += [str(address) for address in names.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    if not found:  # clients verify these names, and the agent checks Host against them
        raise CloudChainConfigError(
            f"--tls-cert {cert} names no DNS name or IP address (subjectAltName)",
            hint="issue it for the names clients use, such as cchain-agent.secrets.svc",
        )
    return found


def host_names(names: list[str], listen_host: str, port: int) -> frozenset[str]:
    """The Host header values a TLS (or wide TCP) agent answers: each name, alone or with
    the port; the listening address too unless it is a wildcard (0.0.0.0, ::)."""
    hosts = list(names)
    try:
        if not ipaddress.ip_address(listen_host).is_unspecified:
            hosts.append(listen_host)
    except ValueError:
        pass
    out: set[str] = set()
    for host in hosts:
        shown = f"[{host}]" if ":" in host else host
        out |= {shown, f"{shown}:{port}"}
    return frozenset(out)


def peer_subject(der: bytes | None) -> str | None:
    """A client certificate's subject (RFC 4514), or None without one."""
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def connect(
    host: str, port: int, timeout: float, cafile: str | None = None,
    certfile: str | None = None, keyfile: str | None = None,
) -> ssl.SSLSocket:  # fmt: skip
    """A TLS 1.2+ connection to an agent whose certificate (checked against cafile, else the
    system's CAs) names host; with a client certificate when certfile is given."""
    context = ssl.create_default_context(cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        context.load_cert_chain(certfile, keyfile or None)
    raw = socket.create_connection((host, port), timeout)
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
