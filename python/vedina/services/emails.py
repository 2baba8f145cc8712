"""Email addresses as identity keys: one normal form, so one person cannot register twice.

>>> normalise_email("  Ada.Lovelace@Example.ORG ")
'ada.lovelace@example.org'
"""

from __future__ import annotations

import re
import unicodedata

from vedina.errors import ValidationFailed

# Checked on the *normalised* form: NFKC turns full-width "，＠＜＞" into ",@<>",
# so a check of the raw input would let one "address" become several recipients.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def normalise_email(email: str) -> str:
    """The normal form of an address, or ValidationFailed (field ``email``).

    Lower-casing the local part is not RFC 5321, but every large provider
    treats it case-insensitively, and two accounts differing only in case are a
    support problem and a phishing aid. Only plain ASCII addresses are
    accepted, so no two spellings (accents, full-width forms) reach one mailbox.
    """
    normal = unicodedata.normalize("NFKC", email).strip().lower()
    if len(normal) > 254 or not _ADDRESS.match(normal):
        raise ValidationFailed("Invalid email address", details={"field": "email"})
    return normal
