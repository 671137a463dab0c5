"""Signed contracts: COSE_Sign1 (RFC 9052 section 4.2) with Ed25519, built on the codec.

Rules of this module:
- The message is CBOR tag 18 over `[protected, unprotected, payload, signature]` where `protected`
  is the bstr of `{1: -8}` (alg: EdDSA, RFC 9053 section 2.2), `unprotected` is `{4: kid}`, and the
  payload is `codec.encode_contract(contract)`. The signature covers the Sig_structure
  `["Signature1", protected, b"", payload]` (RFC 9052 section 4.4), canonically encoded.
- `kid` is the first 8 bytes of SHA-256 of the raw 32-byte public key: enough to tell a rotated
  key from the current one, never trusted on its own (the signature still has to verify).
- `verify_contract` refuses with a named `Refusal`, in a fixed order: structure (UNSIGNED), then
  signature (BAD_SIGNATURE), and only then content (INVALID, WRONG_DEVICE, NOT_YET_VALID, EXPIRED,
  OLDER_VERSION). Nothing inside the payload is looked at before the signature holds.
- Every cbor2 or cryptography exception is wrapped; callers see ContractRefused only.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.codec import (
    canonical_dumps, content_hash, decode_contract, dumps_tagged, encode_contract, loads,
    loads_tagged,
)
from contracts.errors import (
    ContractInvalid, ContractRefused, EncodingError, Refusal, SigningKeyError,
)
from contracts.limits import MAX_CONTRACT_BYTES, MAX_VERSION, quote
from contracts.schema import Contract
from contracts.schema_serialize import format_time

DETAIL_ISSUES = 10
"""Issues quoted in a refusal's detail: it travels in a ContractResult (16 KiB) and a journal entry."""

COSE_SIGN1_TAG = 18
"""CBOR tag of a tagged COSE_Sign1 message (RFC 9052 section 2, table 1)."""

HEADER_ALG, HEADER_KID = 1, 4
"""COSE common header labels (RFC 9052 section 3.1, table 2)."""

ALG_EDDSA = -8
"""COSE algorithm id for EdDSA (RFC 9053 section 2.2); Ed25519 is the only curve we sign with."""

KID_BYTES = 8
PRIVATE_KEY_NAME, PUBLIC_KEY_NAME = "hub.key", "hub.pub"
PRIVATE_KEY_MODE = 0o600  # the hub's signing key must not be readable by other local users


# --------------------------------------------------------------------------------------------
# Keys


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair as `hub.key` (PKCS8 PEM, mode 0600) and `hub.pub` (PEM).

    Raises SigningKeyError if either file already exists or cannot be written."""
    out_dir = Path(out_dir)
    key_path, pub_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    for path in (key_path, pub_path):
        if path.exists():
            raise SigningKeyError(f"{path}: already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    _write_new(key_path, _private_pem(key), PRIVATE_KEY_MODE)
    _write_new(pub_path, _public_pem(key.public_key()), 0o644)
    return key_path, pub_path


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
            os.chmod(path.parent, 0o700)  # a key directory nobody else lists
        # O_EXCL: never follow or truncate a file that appeared since the check; the mode is set at
        # creation so the private key is never briefly world-readable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)  # the umask may have narrowed the mode; make it exact
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot write key: {exc}") from exc


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file `path`. Raises SigningKeyError."""
    key = _load(path, lambda data: serialization.load_pem_private_key(data, password=None))
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM file `path`. Raises SigningKeyError."""
    key = _load(path, serialization.load_pem_public_key)
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def _load(path: Path | str, parse: Any) -> Any:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read key: {exc}") from exc
    try:
        return parse(data)
    except (ValueError, TypeError) as exc:  # cryptography's errors for malformed or encrypted PEM
        raise SigningKeyError(f"{path}: not a PEM key: {exc}") from exc


def key_id(pubkey: Ed25519PublicKey) -> bytes:
    """First 8 bytes of SHA-256 over the raw 32-byte public key."""
    raw = pubkey.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KID_BYTES]


# --------------------------------------------------------------------------------------------
# Sign


_PROTECTED = canonical_dumps({HEADER_ALG: ALG_EDDSA})


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return canonical_dumps(["Signature1", protected, b"", payload])


def sign_contract(c: Contract, key: Ed25519PrivateKey) -> bytes:
    """A tagged COSE_Sign1 message carrying `encode_contract(c)`, signed by `key`."""
    payload = encode_contract(c)
    signature = key.sign(_sig_structure(_PROTECTED, payload))
    unprotected = {HEADER_KID: key_id(key.public_key())}
    return dumps_tagged(COSE_SIGN1_TAG, [_PROTECTED, unprotected, payload, signature])


# --------------------------------------------------------------------------------------------
# Verify


@dataclass(frozen=True, kw_only=True)
class _Sign1:
    protected: bytes
    kid: bytes | None
    payload: bytes
    signature: bytes


def verify_contract(data: bytes, pubkey: Ed25519PublicKey, *, now_ms: int, device: str | None = None,
                    accepted: Mapping[str, int] | None = None, allow_future: bool = False,
                    accepted_hashes: Mapping[str, str] | None = None) -> Contract:
    """The contract in signed message `data`, if this receiver may run it at `now_ms`.

    `accepted` maps contract id -> highest version already accepted; `accepted_hashes` maps contract
    id -> content hash of that version, so re-delivering the identical contract is not refused.
    Raises ContractRefused naming the Refusal (see the module rules for the order of checks)."""
    message = _parse(data)
    _check_signature(message, pubkey)
    contract = _decode_payload(message.payload)
    check_admission(contract, now_ms=now_ms, device=device, accepted=accepted,
                    allow_future=allow_future, accepted_hashes=accepted_hashes)
    return contract


def _parse(data: bytes) -> _Sign1:
    if len(data) > MAX_CONTRACT_BYTES:
        raise ContractRefused(Refusal.INVALID, f"{len(data)} bytes is larger than "
                                               f"{MAX_CONTRACT_BYTES} for a signed contract")
    try:
        tag, item = loads_tagged(data)
    except EncodingError as exc:
        raise ContractRefused(Refusal.UNSIGNED, f"not a COSE_Sign1 message: {exc}") from exc
    if tag != COSE_SIGN1_TAG or not isinstance(item, (list, tuple)) or len(item) != 4:
        raise ContractRefused(Refusal.UNSIGNED, "not a COSE_Sign1 message (CBOR tag 18 over 4 items)")
    protected, unprotected, payload, signature = item
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise ContractRefused(Refusal.UNSIGNED, "protected header, payload and signature must be bstr")
    if not isinstance(unprotected, Mapping):
        raise ContractRefused(Refusal.UNSIGNED, "unprotected header must be a map")
    if not signature:
        raise ContractRefused(Refusal.UNSIGNED, "signature is empty")
    _check_alg(protected)
    kid = unprotected.get(HEADER_KID)
    return _Sign1(protected=protected, kid=kid if isinstance(kid, bytes) else None,
                  payload=payload, signature=signature)


def _check_alg(protected: bytes) -> None:
    try:
        header = loads(protected)
    except EncodingError as exc:
        raise ContractRefused(Refusal.UNSIGNED, f"protected header: {exc}") from exc
    alg = header.get(HEADER_ALG) if isinstance(header, Mapping) else None
    if alg != ALG_EDDSA:
        raise ContractRefused(Refusal.UNSIGNED, f"alg {quote(alg)} is not EdDSA ({ALG_EDDSA})")


def _check_signature(message: _Sign1, pubkey: Ed25519PublicKey) -> None:
    expected = key_id(pubkey)
    if message.kid != expected:
        got = message.kid.hex() if message.kid is not None else "none"
        raise ContractRefused(Refusal.BAD_SIGNATURE,
                              f"kid {got} is not the trusted key's kid {expected.hex()}")
    try:
        pubkey.verify(message.signature, _sig_structure(message.protected, message.payload))
    except InvalidSignature as exc:
        raise ContractRefused(Refusal.BAD_SIGNATURE, "signature does not verify") from exc


def _decode_payload(payload: bytes) -> Contract:
    try:
        return decode_contract(payload)
    except ContractInvalid as exc:
        detail = "; ".join(str(issue) for issue in exc.issues[:DETAIL_ISSUES])
        if len(exc.issues) > DETAIL_ISSUES:
            detail += f" (and {len(exc.issues) - DETAIL_ISSUES} more)"
        raise ContractRefused(Refusal.INVALID, detail) from exc
    except EncodingError as exc:
        raise ContractRefused(Refusal.INVALID, f"payload: {exc}") from exc


def check_admission(contract: Contract, *, now_ms: int, device: str | None = None,
                    accepted: Mapping[str, int] | None = None, allow_future: bool = False,
                    accepted_hashes: Mapping[str, str] | None = None) -> None:
    """Refuse a (verified) contract this receiver must not run now; pure.

    Raises ContractRefused with WRONG_DEVICE, NOT_YET_VALID, EXPIRED or OLDER_VERSION."""
    if device is not None and contract.device != device:
        raise ContractRefused(Refusal.WRONG_DEVICE,
                              f"contract is for device {contract.device!r}, this is {device!r}")
    if now_ms < contract.valid_from and not allow_future:
        raise ContractRefused(Refusal.NOT_YET_VALID,
                              f"valid_from {format_time(contract.valid_from)} is after now "
                              f"{format_time(now_ms)}")
    if now_ms >= contract.valid_until:
        raise ContractRefused(Refusal.EXPIRED, f"valid_until {format_time(contract.valid_until)} "
                                               f"is not after now {format_time(now_ms)}")
    _check_version(contract, accepted or {}, accepted_hashes or {})


def _check_version(contract: Contract, accepted: Mapping[str, int],
                   hashes: Mapping[str, str]) -> None:
    highest = accepted.get(contract.contract)
    if highest is None or contract.version > highest:
        return
    where = f"{contract.contract} version {contract.version}"
    if contract.version < highest:
        raise ContractRefused(Refusal.OLDER_VERSION, f"{where} is older than accepted {highest}")
    if hashes.get(contract.contract) != content_hash(contract):
        raise ContractRefused(Refusal.OLDER_VERSION,
                              f"{where} is already accepted with different content")


def read_signed(data: bytes) -> Contract:
    """The contract inside a COSE_Sign1 message WITHOUT checking the signature or admission.

    Only for data already trusted by other means (a hash-chained local journal being replayed, a
    refusal being reported by id). Raises ContractRefused (UNSIGNED or INVALID) if it is not one."""
    return _decode_payload(_parse(data).payload)


def peek_identity(data: bytes) -> tuple[str | None, int | None]:
    """(contract id, version) of a signed message, best effort and unverified, for reporting a
    refusal; (None, None) when the payload cannot be read."""
    try:  # only the two fields, never a validation: a refusal must be reported cheaply
        doc = loads(_parse(data).payload)
    except (ContractRefused, EncodingError):
        return None, None
    cid, version = (doc.get("contract"), doc.get("version")) if isinstance(doc, Mapping) \
        else (None, None)
    ok = isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= MAX_VERSION
    return (cid[:64] if isinstance(cid, str) and cid else None), (version if ok else None)
