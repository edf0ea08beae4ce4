"""Tokens: keys (:mod:`~otpcore.tokens.keys`) and the codec that issues and verifies JWTs
(:mod:`~otpcore.tokens.codec`), over pyjwt's public API."""

from otpcore.domain.records import RESERVED_CLAIMS, Claims, TokenKind
from otpcore.tokens.codec import TokenCodec
from otpcore.tokens.keys import KeySet, SigningKey, VerificationKey

__all__ = [
    "RESERVED_CLAIMS",
    "Claims",
    "KeySet",
    "SigningKey",
    "TokenCodec",
    "TokenKind",
    "VerificationKey",
]
