"""
Read a TLS server's certificate without trusting it.

The command-line verifier looks at the certificate first and decides
afterwards, so that it can report everything about a refused server.  No
request is sent: the connection is closed right after the handshake.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from attestd.errors import AttestdError


class FetchCertificateError(AttestdError):
    """
    The server could not be reached or did not complete a TLS handshake.
    """


def split_https_url(url: str) -> tuple[str, int]:
    """
    Host and port of an C{https://} URL (port 443 when absent).

    @raise FetchCertificateError: If the URL is not C{https://HOST[:PORT]}.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError as e:
        msg = f"bad port in {url!r}"
        raise FetchCertificateError(msg) from e
    if parts.scheme != "https" or not parts.hostname:
        msg = f"not an https://HOST[:PORT] URL: {url!r}"
        raise FetchCertificateError(msg)
    return parts.hostname, port


def fetch_peer_certificate(url: str, timeout: float) -> bytes:
    """
    The DER certificate a server presents, read during a TLS 1.2+
    handshake with every certificate check off.

    @param url: C{https://HOST[:PORT]}.
    @param timeout: Seconds allowed for connecting and the handshake.
    @return: The certificate DER.
    @raise FetchCertificateError: On any network or TLS failure.
    """
    host, port = split_https_url(url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    # The certificate is self-signed by design; it is verified as RA-TLS
    # evidence afterwards, and nothing is sent over this connection.
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            server_name = None if is_ip_address(host) else host
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        msg = f"cannot complete a TLS handshake with {host}:{port}: {e}"
        raise FetchCertificateError(msg) from e
    if not der:
        msg = f"{host}:{port} presented no certificate"
        raise FetchCertificateError(msg)
    return der


def is_ip_address(host: str) -> bool:
    """
    Whether C{host} is an IPv4 or IPv6 literal (scope ids allowed), to
    which TLS sends no server name (RFC 6066, section 3).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
