"""Token keys: loaded, checked and pinned to one algorithm each, once, at construction.

A key set holds the key new tokens are signed with and every key tokens are accepted from
(for rotation). Nothing here signs or verifies; :mod:`otpcore.tokens.codec` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import PyJWTError

from otpcore.domain.policy import HMAC_MIN_BYTES, check_secret

__all__ = ["HMAC_MIN_BYTES", "KeySet", "LoadedKey", "SigningKey", "VerificationKey"]

#: Key material: a secret (``HS*``), a PEM string/bytes, or a ``cryptography`` key object.
_KeyMaterial: TypeAlias = "bytes | str | PrivateKeyTypes | PublicKeyTypes"

_ALGORITHMS: Final = frozenset({*HMAC_MIN_BYTES, "RS256", "ES256", "EdDSA"})
_RSA_MIN_BITS: Final = 2048  # NIST SP 800-131A
# RFC 7518 §3.4: ES256 is ECDSA on P-256 only. pyjwt before 2.13 signs with any curve.
_EC_CURVES: Final = {"ES256": (ec.SECP256R1, "P-256")}
_PRIVATE_TYPES: Final = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
# Reference implementations, used only to load keys and to build JWKs.
_PYJWT_ALGORITHMS: Final = get_default_algorithms()


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKey:
    """The key new tokens are signed with.

    Attributes:
        algorithm: One of HS256, HS384, HS512, RS256, ES256, EdDSA.
        key: The secret (``HS*``), or a private key as PEM or a ``cryptography`` object.
        kid: Key identifier written to the token header; required when rotating keys.
    """

    algorithm: str
    key: bytes | str | PrivateKeyTypes = field(repr=False)
    kid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationKey:
    """A further key tokens are accepted from (e.g. the previous key during rotation).

    Attributes:
        algorithm: The only algorithm accepted for tokens naming this key.
        key: The secret (``HS*``), or a public (or private) key as PEM or a key object.
        kid: Key identifier tokens carry in their header.
    """

    algorithm: str
    key: bytes | str | PublicKeyTypes | PrivateKeyTypes = field(repr=False)
    kid: str | None = None


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A key parsed once: its pinned algorithm and the object pyjwt signs or verifies with."""

    algorithm: str
    algorithms: tuple[str]
    key: Any
    kid: str | None


class KeySet:
    """One signing key plus every key tokens are accepted from, parsed and checked once.

    The signing key always verifies too. With more than one verification key every key needs
    a distinct ``kid``, and a token is checked only against the key its header names, with
    that key's algorithm.

    Raises:
        ValueError: An unsupported algorithm, a key that does not fit its algorithm (wrong
            type or curve, RSA under 2048 bits, an empty HMAC secret or a PEM offered as one,
            a public key to sign with), or missing/duplicate ``kid``s.
    """

    __slots__ = ("_by_kid", "_signing", "_verification")

    def __init__(self, signing: SigningKey, verification: Sequence[VerificationKey] = ()) -> None:
        self._signing = _load(signing.algorithm, signing.key, signing.kid, sign=True)
        entries = [_verifier_of(self._signing)]
        entries += [_load(v.algorithm, v.key, v.kid, sign=False) for v in verification]
        if len(entries) > 1:
            kids = [entry.kid for entry in entries]
            if None in kids:
                raise ValueError("every key needs a kid when there is more than one key")
            if len(set(kids)) != len(kids):
                raise ValueError("key ids (kid) must be unique")
        self._verification: tuple[LoadedKey, ...] = tuple(entries)
        self._by_kid: dict[str | None, LoadedKey] = {entry.kid: entry for entry in entries}

    @classmethod
    def symmetric(cls, secret: bytes | str, algorithm: str = "HS256") -> KeySet:
        """A key set of one shared secret that both signs and verifies."""
        if algorithm not in HMAC_MIN_BYTES:
            raise ValueError(f"symmetric algorithm must be one of {sorted(HMAC_MIN_BYTES)}")
        return cls(SigningKey(algorithm=algorithm, key=secret))

    def jwks(self) -> dict[str, Any]:
        """The public verification keys as a JWK Set (RFC 7517); never a shared secret."""
        keys: list[dict[str, Any]] = []
        for entry in self._verification:
            if entry.algorithm in HMAC_MIN_BYTES:
                continue
            jwk: dict[str, Any] = dict(
                _PYJWT_ALGORITHMS[entry.algorithm].to_jwk(entry.key, as_dict=True)
            )
            jwk.pop("key_ops", None)  # RFC 7517 §4.3: not alongside "use"
            jwk.update(alg=entry.algorithm, use="sig")
            if entry.kid is not None:
                jwk["kid"] = entry.kid
            keys.append(jwk)
        return {"keys": keys}


def _load(algorithm: str, key: _KeyMaterial, kid: str | None, *, sign: bool) -> LoadedKey:
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(_ALGORITHMS)}, got {algorithm!r}")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise ValueError("kid must be a non-empty string")
    reference = _PYJWT_ALGORITHMS[algorithm]
    if algorithm in HMAC_MIN_BYTES and not isinstance(key, bytes | str):
        raise ValueError(f"{algorithm} needs a secret (bytes or str), not a key object")
    try:
        # pyjwt's own loader: PEM/SSH parsing, key family and curve checks, and for HMAC the
        # refusal of PEM/JWK-shaped secrets (the HS/RS confusion defence).
        if algorithm in HMAC_MIN_BYTES and isinstance(key, bytes | str):
            # The floor every mode shares (never empty; pyjwt < 2.13 takes b""). The rest of
            # the rule needs the policy's developer mode, so the codec applies it.
            check_secret(key, algorithm=algorithm, developer_mode=True)
        loaded = reference.prepare_key(key)
    except (PyJWTError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"key does not fit {algorithm}: {exc}") from None
    if algorithm in HMAC_MIN_BYTES:
        return LoadedKey(algorithm, (algorithm,), loaded, kid)
    if algorithm in _EC_CURVES:
        curve, curve_name = _EC_CURVES[algorithm]
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            raise ValueError(f"{algorithm} needs an elliptic-curve key")
        if not isinstance(loaded.curve, curve):
            raise ValueError(
                f"{algorithm} needs a key on curve {curve_name}, not {loaded.curve.name}"
            )
    if isinstance(loaded, rsa.RSAPrivateKey | rsa.RSAPublicKey) and (
        loaded.key_size < _RSA_MIN_BITS
    ):
        raise ValueError(f"RSA keys must have at least {_RSA_MIN_BITS} bits")
    if sign and not isinstance(loaded, _PRIVATE_TYPES):
        raise ValueError(f"the {algorithm} signing key must be a private key")
    if not sign and isinstance(loaded, _PRIVATE_TYPES):
        loaded = loaded.public_key()
    return LoadedKey(algorithm, (algorithm,), loaded, kid)


def _verifier_of(signing: LoadedKey) -> LoadedKey:
    if isinstance(signing.key, _PRIVATE_TYPES):
        return LoadedKey(
            signing.algorithm, signing.algorithms, signing.key.public_key(), signing.kid
        )
    return signing
