"""Stripe's request bodies: ``application/x-www-form-urlencoded`` with bracketed nesting.

The SDK writes ``metadata[plan]=basic``, ``invoice_settings[default_payment_method]=pm_1``
and lists as ``expand[0]=latest_charge`` (``expand[]=...`` is accepted too). Everything
stays a string, as on the wire; the endpoints convert the fields they know.

>>> decode_form(b"amount=500&metadata[plan]=basic&expand[0]=latest_charge&confirm=true")
{'amount': '500', 'metadata': {'plan': 'basic'}, 'expand': ['latest_charge'], 'confirm': 'true'}
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
MAX_DEPTH = 5


class FormError(ValueError):
    """A key that is not ``name`` or ``name[sub]...``; the message names it."""


def decode_form(body: bytes | str) -> dict[str, Any]:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        match = _KEY.match(key)
        if not match:
            raise FormError(f"Invalid parameter name: {key}")
        path = [match.group(1), *_PART.findall(match.group(2))]
        if len(path) > MAX_DEPTH:
            raise FormError(f"Parameter nests too deeply: {key}")
        _assign(root, path, value, key)
    return _lists(root)


def _assign(node: dict[str, Any], path: list[str], value: str, key: str) -> None:
    for index, part in enumerate(path[:-1]):
        following = path[index + 1]
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise FormError(f"Parameter {key} mixes a value and a hash")
        if following == "":  # name[]=a&name[]=b: append in order
            child[str(len(child))] = value
            return
        node = child
    last = path[-1]
    if isinstance(node.get(last), dict):
        raise FormError(f"Parameter {key} mixes a value and a hash")
    node[last] = value


def _lists(node: dict[str, Any]) -> dict[str, Any]:
    """Hashes whose keys are 0..n-1 become lists (how the SDK writes arrays)."""
    for key, value in node.items():
        if isinstance(value, dict):
            value = _lists(value)
            if value and all(k.isdigit() for k in value) and sorted(map(int, value)) == list(range(len(value))):
                value = [value[str(i)] for i in range(len(value))]
            node[key] = value
    return node
