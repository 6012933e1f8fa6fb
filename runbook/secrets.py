"""The tool's secrets: from a file (the documented default), or from an environment variable.

`NAME_FILE=/run/secrets/name` — the Kubernetes secret-volume and Docker-secret way — keeps the
value out of every process's environment (a command a step runs could read its parent's
`/proc/PID/environ`); `NAME` itself still works. The file's trailing newline is no part of the
secret. Where a value is shown (evidence, artifacts, logs) it is redacted, in its encoded forms too.
"""

from __future__ import annotations

import base64
import os
import urllib.parse

from actor_rollback.runbook.errors import BadInputError


class SecretError(BadInputError, ValueError):
    """A secret's file is named but cannot be read; the message names the variable and the file."""


def secret(name: str) -> str:
    """NAME's value: the file NAME_FILE names when that is set, else the variable NAME; "" when neither is."""
    if not name:
        return ""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"{name}_FILE = {path}: cannot read the secret ({exc}); fix the path or the "
                              "file's permissions") from None
    return os.environ.get(name, "").strip()


def secret_values(names) -> list[str]:
    """The values of these secrets that are set (6 characters or more: shorter ones would redact ordinary text)."""
    values = set()
    for name in names:
        try:
            value = secret(name)
        except SecretError:
            continue
        if len(value) >= 6:
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _base64_forms(raw: bytes) -> set[str]:
    """The text every base64 encoding of `raw` contains wherever `raw` sits in the encoded bytes: for each of the
    three alignments, the characters made of `raw`'s bits alone (so "user:TOKEN" in a Basic header is found)."""
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            text = encode(b"\0" * shift + raw + b"\0\0").decode()
            first = -(-8 * shift // 6)  # ceil: the first character holding only raw's bits
            last = (8 * (shift + len(raw))) // 6  # the first one holding a bit after raw
            if last - first >= 4:
                forms.add(text[first:last])
    return forms


def encoded_forms(value: str) -> set[str]:
    """The value as it may appear in evidence: itself, URL-encoded, base64 (standard and URL-safe), hex."""
    raw = value.encode()
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), raw.hex(),
            *_base64_forms(raw)} - {""}


def redact_text(text: str, values: list[str]) -> str:
    for form in sorted({f for v in values for f in encoded_forms(v)}, key=len, reverse=True):
        text = text.replace(form, "[redacted]")
    return text
