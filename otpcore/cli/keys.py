"""``otpcore keys generate``: a new signing key as PEM, and its public JWK with a ``kid``."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from otpcore.tokens import KeySet, SigningKey

__all__ = ["ALGORITHMS", "GeneratedKey", "generate_key", "jwk_thumbprint"]

ALGORITHMS: Final = ("EdDSA", "ES256", "RS256")
RSA_BITS: Final = (2048, 3072, 4096)
# RFC 7638 §3.2: the members that make up each key type's thumbprint input.
_THUMBPRINT_MEMBERS: Final = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
_OKP_MEMBERS: Final = ("crv", "kty", "x")


class GeneratedKey:
    """A private key as PKCS#8 PEM and its public JWK (``kid``, ``alg``, ``use``)."""

    __slots__ = ("algorithm", "jwk", "kid", "private_pem", "public_pem")

    def __init__(self, algorithm: str, key: PrivateKeyTypes, kid: str | None) -> None:
        self.algorithm = algorithm
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        # The project's own JWKS code builds the JWK, so it matches what the app publishes.
        [jwk] = KeySet(SigningKey(algorithm=algorithm, key=key)).jwks()["keys"]
        self.kid = kid or jwk_thumbprint(jwk)
        self.jwk: dict[str, Any] = {**jwk, "kid": self.kid}

    def as_json(self, *, include_private: bool = True) -> dict[str, Any]:
        """The key as one JSON object; without ``private_key_pem`` if asked."""
        document: dict[str, Any] = {"alg": self.algorithm, "kid": self.kid}
        if include_private:
            document["private_key_pem"] = self.private_pem
        document["public_key_pem"] = self.public_pem
        document["public_jwk"] = self.jwk
        return document


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS.get(jwk["kty"], _OKP_MEMBERS)
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def generate_key(algorithm: str, *, kid: str | None = None, rsa_bits: int = 3072) -> GeneratedKey:
    """A fresh private key for ``algorithm``; ``kid`` defaults to the JWK thumbprint.

    Raises:
        ValueError: An algorithm other than EdDSA, ES256 or RS256, or an RSA size not offered.
    """
    key: PrivateKeyTypes
    if algorithm == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        if rsa_bits not in RSA_BITS:
            raise ValueError(f"RSA keys are {', '.join(map(str, RSA_BITS))} bits")
        key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    else:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    return GeneratedKey(algorithm, key, kid)
