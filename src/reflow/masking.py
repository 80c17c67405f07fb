"""One place that hides credentials in text shown to people (errors, logs, the API).

``mask_credentials`` replaces the password of every ``scheme://user:password@host``
in a text with ``***`` (a bare ``scheme://token@host`` becomes ``***@host``),
whatever the password holds — ``@``, ``:`` or ``/`` included — and in lists such
as NATS's ``nats://a:b@h1,nats://c:d@h2``. It over-masks rather than under-masks:
an ``@`` in a URL's path hides what precedes it too.
"""

from __future__ import annotations

import re

__all__ = ["mask_credentials"]

# A URL: its scheme, then everything up to whitespace, a comma or a quote.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s,'\"]+)")


def _mask(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    at = rest.rfind("@")
    if at < 0:
        return match.group(0)
    user, colon, _ = rest[:at].partition(":")
    shown = f"{user}:***" if colon and "/" not in user else "***"
    return scheme + shown + rest[at:]


def mask_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _URL.sub(_mask, text)
