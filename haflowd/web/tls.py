"""HTTPS for the daemon: the server's TLS context from ``HAFLOW_TLS_CERT`` and ``HAFLOW_TLS_KEY``.

Pods of a remote engine fetch a run's areas and hand them back over the
network, carrying one-time tokens: those must not cross it in clear text.
TLS 1.2 is the oldest version spoken; the ciphers are Python's defaults for
a server. The key is read once, at start-up; replacing the files takes a
restart.
"""

from __future__ import annotations

import ssl

from ..config import Config
from ..errors import HaflowError

#: The oldest protocol version a client may speak.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context to listen with, or ``None`` for plain HTTP; raises HaflowError naming a bad file."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    for name, path in (("HAFLOW_TLS_CERT", config.tls_cert), ("HAFLOW_TLS_KEY", config.tls_key)):
        # OpenSSL's own error would not say which file is missing.
        if not path.is_file():
            raise HaflowError(f"Cannot read {name}: {path} does not exist or is not a file")
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (ssl.SSLError, OSError) as e:
        raise HaflowError(
            f"Cannot use HAFLOW_TLS_CERT={config.tls_cert} with HAFLOW_TLS_KEY={config.tls_key}: "
            f"{getattr(e, 'reason', None) or e.strerror or e} (both must be PEM, the key unencrypted and matching)"
        ) from None
    return context
