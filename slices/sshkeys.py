"""Users' SSH public keys: parsing, validation, fingerprints, and the writes (add, rename, remove).

A key is one OpenSSH public key line (``TYPE BASE64 [COMMENT]``): ed25519, ECDSA
(nistp256/384/521) or RSA of at least 2048 bits. The key itself is loaded by
``cryptography`` (a dependency of paramiko), so a truncated or forged blob is
refused, not stored. Options before the type (``command=...``) and more than one
key per entry are refused: an entry is exactly one key a guest will trust.

Keys reach a VM through its NoCloud seed (``provisioning.plans.seed``) at its
first deploy; see docs/guests.md for what happens to keys added later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from .errors import Conflict, InvalidRequest
from .models import SshKey

RSA_MIN_BITS = 2048
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
PUBLIC_KEY_MAX_LENGTH = 8192  # an RSA-16384 line is ~2.8 kB
COMMENT_MAX_LENGTH = 200
KEY_NAME_MAX_LENGTH = 64
# A comment is free text for people; control characters (newlines above all) are refused.
_COMMENT_RE = re.compile(r"[^\x00-\x1f\x7f]*")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True)
class ParsedKey:
    """A validated key: ``line`` is the normalized ``TYPE BASE64`` (no comment), the form guests get."""

    key_type: str
    blob: str
    comment: str
    fingerprint: str
    bits: int

    @property
    def line(self) -> str:
        return f"{self.key_type} {self.blob}"


def fingerprint(blob: bytes) -> str:
    """OpenSSH's fingerprint of a key blob: ``SHA256:`` + unpadded base64 (as ``ssh-keygen -l`` prints)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _blob_type(blob: bytes) -> str:
    """The key type written inside the blob (a length-prefixed string)."""
    if len(blob) < 4:
        return ""
    (length,) = struct.unpack(">I", blob[:4])
    return blob[4 : 4 + length].decode("ascii", "replace") if length <= 64 else ""


def parse_public_key(text: str) -> ParsedKey:
    """Validate one OpenSSH public key line; raise ``InvalidRequest`` (field ``public_key``) with the reason."""

    def refuse(message: str):
        raise InvalidRequest(message, field="public_key", code="invalid_key")

    if not isinstance(text, str) or not text.strip():
        refuse("Paste one OpenSSH public key line (ssh-ed25519 AAAA... comment).")
    if len(text) > PUBLIC_KEY_MAX_LENGTH:
        refuse(f"A public key line is at most {PUBLIC_KEY_MAX_LENGTH} characters.")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        refuse(f"One key per entry: this text holds {len(lines)} lines. Add each key on its own.")
    parts = lines[0].strip().split(None, 2)
    if parts[0] not in KEY_TYPES:
        if parts[0].startswith("-----BEGIN"):
            refuse("This is a PEM block (a private key?). Paste the public key: the .pub file's line.")
        if parts[0] == "ssh-dss":
            refuse("DSA keys are refused (OpenSSH disabled them). Use ed25519, ECDSA or RSA (2048 bits or more).")
        refuse(
            f"Unsupported key type {parts[0][:40]!r} (options before the type are not accepted either). "
            "Use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa."
        )
    if len(parts) < 2 or not _BASE64_RE.fullmatch(parts[1]):
        refuse("The key's base64 part is missing or malformed.")
    key_type, blob_text = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if not _COMMENT_RE.fullmatch(comment) or len(comment) > COMMENT_MAX_LENGTH:
        refuse(f"The key's comment must be printable text of at most {COMMENT_MAX_LENGTH} characters.")
    try:
        blob = base64.b64decode(blob_text, validate=True)
    except (binascii.Error, ValueError):
        refuse("The key's base64 part does not decode.")
    if _blob_type(blob) != key_type:
        refuse(f"The key data is not a {key_type} key (truncated or pasted from another key?).")
    try:
        key = load_ssh_public_key(f"{key_type} {blob_text}".encode())
    except (ValueError, UnsupportedAlgorithm):
        refuse(f"The key data is not a valid {key_type} key (truncated?).")
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if bits < RSA_MIN_BITS:
            refuse(f"This RSA key has {bits} bits; at least {RSA_MIN_BITS} are required.")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.curve.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        bits = 256
    else:  # pragma: no cover - the type list above admits no other
        refuse(f"Unsupported key type {key_type}.")
    return ParsedKey(key_type, blob_text, comment, fingerprint(blob), bits)


def _clean_name(name: str, parsed: ParsedKey | None = None) -> str:
    if name is None or name == "":
        if parsed is not None:
            return (parsed.comment or parsed.fingerprint[:20])[:KEY_NAME_MAX_LENGTH]
        raise InvalidRequest("A key needs a name.", field="name")
    if not isinstance(name, str) or not name.strip() or len(name) > KEY_NAME_MAX_LENGTH:
        raise InvalidRequest(f"A key name is 1 to {KEY_NAME_MAX_LENGTH} characters.", field="name")
    if not _COMMENT_RE.fullmatch(name):
        raise InvalidRequest("A key name is printable text (no control characters).", field="name")
    return name.strip()


def key_add(*, owner: AbstractBaseUser, public_key: str, name: str = "") -> SshKey:
    """Add a validated key to the user's profile (named after its comment when no name is given)."""
    parsed = parse_public_key(public_key)
    clean = _clean_name(name, parsed)
    if SshKey.objects.filter(owner=owner, fingerprint=parsed.fingerprint).exists():
        raise Conflict(f"This key ({parsed.fingerprint}) is already in your profile.", code="duplicate_key")
    if SshKey.objects.filter(owner=owner, name=clean).exists():
        raise Conflict(f"You already have a key named {clean!r}.", code="duplicate_name")
    try:
        with transaction.atomic():
            return SshKey.objects.create(
                owner=owner,
                name=clean,
                key_type=parsed.key_type,
                public_key=parsed.line,
                comment=parsed.comment,
                fingerprint=parsed.fingerprint,
                bits=parsed.bits,
            )
    except IntegrityError as exc:  # a concurrent add of the same key or name
        raise Conflict("This key or name was just added.", code="duplicate_key") from exc


def key_rename(*, key: SshKey, name: str) -> SshKey:
    """Rename one of the user's keys."""
    clean = _clean_name(name)
    if SshKey.objects.filter(owner_id=key.owner_id, name=clean).exclude(pk=key.pk).exists():
        raise Conflict(f"You already have a key named {clean!r}.", code="duplicate_name")
    key.name = clean
    key.save(update_fields=["name"])
    return key


def key_remove(*, key: SshKey) -> None:
    """Remove a key from the profile: new VMs no longer get it (running guests keep what they received)."""
    key.delete()


def keys_of(*, owner: AbstractBaseUser) -> list[SshKey]:
    """The user's keys, oldest first (the order guests receive them in)."""
    return list(SshKey.objects.filter(owner=owner).order_by("created", "id"))
