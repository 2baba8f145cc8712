"""Email addresses as identity keys: one normal form, so one person cannot register twice.

>>> normalise_email("  Ada.Lovelace@Example.ORG ")
'ada.lovelace@example.org'
"""

from __future__ import annotations

import unicodedata


def normalise_email(email: str) -> str:
    # Lower-casing the local part is not RFC 5321, but every large provider
    # treats it case-insensitively, and two accounts differing only in case
    # are a support problem and a phishing aid.
    return unicodedata.normalize("NFKC", email).strip().lower()
