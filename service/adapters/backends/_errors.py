"""Exceptions raised by the embedded backends.

Every failure here is about the *test or demo environment*, never about replicated data, so
these errors stay separate from the core's domain outcomes::

    BackendError                  anything below; catch this to fall back or skip
    ├── BackendUnavailableError   the backend cannot be had here (moto[server] not installed,
    │                             or an isolated view asked of an external endpoint)
    ├── BackendStartError         the process started but died or never answered; the message
    │                             carries the tail of its output
    └── TableSetupError           a table already exists but cannot serve as a replica
                                  (wrong keys, stream off or of the wrong view type, other TTL)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendStartError",
    "BackendUnavailableError",
    "TableSetupError",
]


class BackendError(Exception):
    """Base class of every error raised by `service.adapters.backends`."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot run on this machine (the message says what is missing)."""


class BackendStartError(BackendError):
    """The backend process exited early or did not become ready before its deadline."""


class TableSetupError(BackendError):
    """An existing table does not match what a replica table needs (the message says how)."""
