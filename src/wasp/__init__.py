"""wasp: WhatsApp sessions for many tenants on Kubernetes, for one-time passwords.

This package is what a tenant's API imports: the contract (resource names,
Redis keys, environment variables) and, as it grows, the client library and
the ``wasp`` command line. It never imports the operator or the session pod.
"""

from wasp._version import __version__

__all__ = ["__version__"]
