"""Broker password hashes, pure: salted scrypt (ours), and Mosquitto 2's `$7$` PBKDF2-SHA512.

A login's `password_hash` in hub.toml may be either. The embedded broker checks both; Mosquitto
checks only `$7$` (and its older `$6$`), so a login that must also work on the site's Mosquitto
gets a `$7$` hash (`fieldpact hub hash-password --mosquitto`), and `export-mosquitto` copies it into
the password file. A scrypt hash cannot be converted: such logins are listed in the exported file
as comments, to be set on the broker host with `mosquitto_passwd`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

# scrypt cost: n=2**14, r=8, p=1 is the RFC 7914 section 2 interactive-login setting (16 MiB, tens of
# ms); a connecting device pays it once per connect, and it runs in a thread off the broker's loop.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_MOSQUITTO_SALT_BYTES = 12  # what mosquitto_passwd 2.x writes
MOSQUITTO_ITERATIONS = 101
"""mosquitto_passwd 2.x's own default. Mosquitto verifies in its single broker thread, so a high
count makes every (even failing) CONNECT stall the broker; the hash is as weak as its password."""
_MAX_ITERATIONS = 10_000_000  # refuse absurd counts from a config file rather than hang on them


def hash_password(password: str) -> str:
    """Salted scrypt hash as `scrypt$n$r$p$salt$hash` (base64 parts)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    parts = (str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    return "$".join(("scrypt", *parts))


def mosquitto_hash(password: str, *, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """A Mosquitto 2.x `$7$` hash (PBKDF2-HMAC-SHA512, 12-byte salt), as mosquitto_passwd writes."""
    salt = secrets.token_bytes(_MOSQUITTO_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def mosquitto_password_line(username: str, password: str, *,
                            iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """One Mosquitto 2.x password-file line, `username:$7$...`."""
    return f"{username}:{mosquitto_hash(password, iterations=iterations)}"


def is_mosquitto_hash(password_hash: str) -> bool:
    """True for a hash Mosquitto 2 accepts in its password file (`$7$` or the older `$6$`)."""
    return password_hash.startswith(("$7$", "$6$"))


def check_password(password: str, password_hash: str) -> bool:
    """True if `password` produced `password_hash` (scrypt, `$7$` or `$6$`). Malformed: False."""
    try:
        actual, expected = _derive(password, password_hash)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def _derive(password: str, password_hash: str) -> tuple[bytes, bytes]:
    parts = password_hash.split("$")
    if parts[0] == "scrypt" and len(parts) == 6:
        _, n, r, p, salt, digest = parts
        return _scrypt(password, _unb64(salt), int(n), int(r), int(p)), _unb64(digest)
    if parts[:2] == ["", "7"] and len(parts) == 5:
        iterations = int(parts[2])
        if not 0 < iterations <= _MAX_ITERATIONS:
            raise ValueError("iterations out of range")
        derived = hashlib.pbkdf2_hmac("sha512", password.encode(), _unb64(parts[3]), iterations)
        return derived, _unb64(parts[4])
    if parts[:2] == ["", "6"] and len(parts) == 4:
        return hashlib.sha512(password.encode() + _unb64(parts[2])).digest(), _unb64(parts[3])
    raise ValueError("unknown hash scheme")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
