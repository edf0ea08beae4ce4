"""JWT issue and verification over pyjwt: pinned algorithms, typed tokens, injected time.

pyjwt's public signature layer (:class:`jwt.PyJWS`) signs and verifies; the registered claims
the codec relies on are checked here, from the verified payload, so every check holds the
same on every pyjwt version the package allows.

Pure: ``now`` and ``jti`` are parameters; nothing here reads the clock or draws randomness.
Every refusal is a :class:`~otpcore.domain.errors.TokenInvalid` or
:class:`~otpcore.domain.errors.TokenExpired` with a fixed message; pyjwt's own exceptions and
messages never leave this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from jwt.algorithms import HMACAlgorithm
from jwt.api_jws import PyJWS, get_unverified_header
from jwt.exceptions import PyJWTError

from otpcore.domain.errors import ReservedClaimError, TokenExpired, TokenInvalid
from otpcore.domain.policy import HMAC_MIN_BYTES, Policy, check_secret
from otpcore.domain.records import RESERVED_CLAIMS, Claims, TokenKind
from otpcore.tokens.keys import KeySet, LoadedKey

if TYPE_CHECKING:
    from jwt.types import HashlibHash

__all__ = ["MAX_TOKEN_LENGTH", "TokenCodec"]

# JOSE `typ` per kind: RFC 9068 §2.1 for access tokens; "rt+jwt" mirrors it for refresh.
_TYP: Final[Mapping[str, str]] = MappingProxyType({"access": "at+jwt", "refresh": "rt+jwt"})
# Longer input is refused before parsing: pyjwt checks base64 character by character, so an
# unbounded header would be a CPU lever for anyone who can send a request.
MAX_TOKEN_LENGTH: Final = 16_384

_HASHES: Final[Mapping[str, HashlibHash]] = MappingProxyType(
    {"HS256": HMACAlgorithm.SHA256, "HS384": HMACAlgorithm.SHA384, "HS512": HMACAlgorithm.SHA512}
)

_INVALID: Final = "Invalid token."
_WRONG_KIND: Final = "Token has the wrong type."
_IMMATURE: Final = "Token is not yet valid."


class _CheckedHMAC(HMACAlgorithm):
    """HMAC over secrets that were checked once, when the key set and codec were built.

    pyjwt re-checks the secret on every call: its shape (not a PEM/DER/JWK, ~25 µs) and its
    length, which it reports as an ``InsecureKeyLengthWarning``. Both depend on the key, not
    the token, so they run once at construction instead, and the length rule is enforced
    there (a ``ValueError`` outside developer mode). A per-call warning could then only be
    about a short secret that developer mode accepted on purpose, and would break callers
    that run with warnings as errors. Overriding the check for our own secrets is narrower
    than a warnings filter, which is process-global and not thread-safe on Python 3.11.
    """

    def __init__(self, hash_alg: HashlibHash, secrets: tuple[bytes, ...]) -> None:
        super().__init__(hash_alg)
        self._secrets = secrets
        # Identity, not equality: only the very objects checked at construction qualify. Ids
        # are unique among live objects, and _secrets keeps these alive, so a key with one of
        # these ids is one of these secrets. A set lookup: pyjwt asks twice per token.
        self._checked_ids = frozenset(id(secret) for secret in secrets)

    def _is_checked(self, key: object) -> bool:
        return id(key) in self._checked_ids

    def prepare_key(self, key: str | bytes) -> bytes:
        if self._is_checked(key):
            assert isinstance(key, bytes)
            return key
        return super().prepare_key(key)

    def check_key_length(self, key: bytes) -> str | None:
        return None if self._is_checked(key) else super().check_key_length(key)


def _signature_engine(keys: Sequence[LoadedKey]) -> PyJWS:
    """A PyJWS that knows only the key set's algorithms, HMAC ones as :class:`_CheckedHMAC`."""
    names = {entry.algorithm for entry in keys}
    hmac_names = sorted(names.intersection(HMAC_MIN_BYTES))
    # pyjwt's length check raises rather than warns for any key that skipped ours.
    jws = PyJWS(
        algorithms=sorted(names.difference(hmac_names)),
        options={"verify_signature": True, "enforce_minimum_key_length": True},
    )
    for name in hmac_names:
        secrets = tuple(entry.key for entry in keys if entry.algorithm == name)
        jws.register_algorithm(name, _CheckedHMAC(_HASHES[name], secrets))
    return jws


def _timestamp(now: datetime) -> float:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.timestamp()


def _unverified_kid(token: str) -> str:
    """The ``kid`` of a token's header, parsed only to choose a key; never trusted further.

    Only the header segment is handed to pyjwt (as a token with empty payload and signature):
    decoding the whole token here would validate its payload and signature encoding twice,
    as the full verification that follows does it again. That verification re-reads the same
    header bytes and checks its ``kid`` against the chosen key.
    """
    try:
        header = get_unverified_header(token.partition(".")[0] + "..")
    except (PyJWTError, ValueError, RecursionError):
        raise TokenInvalid(_INVALID) from None
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenInvalid(_INVALID)
    return kid


class TokenCodec:
    """Issues and verifies access and refresh tokens for one key set and policy.

    Args:
        keys: The signing key and the keys tokens are accepted from.
        policy: Lifetimes, ``iss``/``aud``, leeway and developer mode.

    Raises:
        ValueError: An HMAC secret the policy refuses (see
            :func:`~otpcore.domain.policy.check_secret`): outside developer mode, one shorter
            than its hash (RFC 7518 §3.2: 32/48/64 bytes for HS256/384/512) or a placeholder.
    """

    __slots__ = (
        "_audience",
        "_by_kid",
        "_fixed_claims",
        "_headers",
        "_issuer",
        "_jws",
        "_leeway",
        "_lifetimes",
        "_required",
        "_signing",
        "_single",
    )

    def __init__(self, keys: KeySet, policy: Policy) -> None:
        loaded = keys._verification
        for entry in (keys._signing, *loaded):
            if entry.algorithm in HMAC_MIN_BYTES:
                check_secret(
                    entry.key, algorithm=entry.algorithm, developer_mode=policy.developer_mode
                )
        self._jws = _signature_engine((keys._signing, *loaded))
        # Present and not null, as pyjwt's `require` option means it.
        self._required = tuple(
            sorted(
                RESERVED_CLAIMS - {"iss", "aud"}
                | ({"iss"} if policy.issuer is not None else set())
                | ({"aud"} if policy.audience is not None else set())
            )
        )
        self._signing = keys._signing
        self._single = loaded[0] if len(loaded) == 1 else None
        self._by_kid = keys._by_kid
        self._issuer = policy.issuer
        self._audience = policy.audience
        self._leeway = policy.leeway.total_seconds()
        self._lifetimes = {
            "access": policy.access_lifetime.total_seconds(),
            "refresh": policy.refresh_lifetime.total_seconds(),
        }
        kid = {"kid": self._signing.kid} if self._signing.kid is not None else {}
        self._headers = {kind: {"typ": typ, **kid} for kind, typ in _TYP.items()}
        fixed: dict[str, str] = {}
        if policy.issuer is not None:
            fixed["iss"] = policy.issuer
        if policy.audience is not None:
            fixed["aud"] = policy.audience
        self._fixed_claims = fixed

    def issue(
        self,
        *,
        kind: TokenKind,
        subject: str,
        sid: str,
        jti: str,
        auth_time: float,
        now: datetime,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign a token of ``kind`` valid from ``now`` for the policy's lifetime.

        Args:
            kind: ``"access"`` or ``"refresh"``.
            subject: The user identifier (``sub``).
            sid: The session (refresh-token family) identifier.
            jti: A fresh unique identifier for this token.
            auth_time: When the session began, unix seconds (kept to the millisecond).
            now: The current instant (timezone-aware).
            extra: Custom claims; JSON-serializable, none of :data:`RESERVED_CLAIMS`.

        Returns:
            The compact JWS.

        Raises:
            ReservedClaimError: ``extra`` names a reserved claim.
        """
        try:
            headers = self._headers[kind]
            lifetime = self._lifetimes[kind]
        except KeyError:
            raise ValueError(f"kind must be 'access' or 'refresh', got {kind!r}") from None
        if extra:
            clash = RESERVED_CLAIMS.intersection(extra)
            if clash:
                raise ReservedClaimError(frozenset(clash))
        timestamp = _timestamp(now)
        issued = int(timestamp)
        payload: dict[str, Any] = {
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": int(timestamp + lifetime),
            "jti": jti,
            "type": kind,
            "sid": sid,
            "auth_time": round(auth_time, 3),
            **self._fixed_claims,
        }
        if extra:
            payload.update(extra)
        signing = self._signing
        # As pyjwt's PyJWT.encode serializes a payload (compact JSON, UTF-8).
        encoded = json.dumps(payload, separators=(",", ":")).encode()
        return self._jws.encode(
            encoded, signing.key, algorithm=signing.algorithm, headers=headers, sort_headers=False
        )

    def verify(self, token: str, *, kind: TokenKind, now: datetime) -> Claims:
        """Check a token's signature, kind, issuer, audience and times at ``now``.

        The algorithm is the one pinned to the key the token names, never the header's.

        Args:
            token: The compact JWS as presented.
            kind: The kind the caller expects; the other kind is refused.
            now: The current instant (timezone-aware).

        Returns:
            The verified claims.

        Raises:
            TokenExpired: ``exp`` is at or before ``now`` minus the leeway.
            TokenInvalid: Anything else wrong: malformed, bad signature, unknown ``kid``,
                wrong kind, wrong ``iss``/``aud``, a missing claim, or ``nbf``/``iat``
                after ``now`` plus the leeway.
        """
        typ = _TYP.get(kind)
        if typ is None:
            raise ValueError(f"kind must be 'access' or 'refresh', got {kind!r}")
        timestamp = _timestamp(now)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid(_INVALID)
        entry = self._single
        if entry is None:
            entry = self._by_kid.get(_unverified_kid(token))
            if entry is None:
                raise TokenInvalid(_INVALID)
        try:
            decoded = self._jws.decode_complete(token, entry.key, algorithms=entry.algorithms)
            payload: Any = json.loads(decoded["payload"])
        except Exception:
            # Fail closed: whatever pyjwt or the decoders raise on hostile input (including
            # UnicodeError on lone surrogates, RecursionError on deep JSON) is a refusal, and
            # none of its text escapes.
            raise TokenInvalid(_INVALID) from None
        header: dict[str, Any] = decoded["header"]
        if (
            not isinstance(payload, dict)
            or not self._registered_claims_hold(payload)
            or header.get("kid", entry.kid) != entry.kid
            # RFC 7515 §4.1.11: no extension is understood here (pyjwt < 2.11 ignores crit).
            or "crit" in header
        ):
            raise TokenInvalid(_INVALID)
        if header.get("typ") != typ or payload["type"] != kind:
            raise TokenInvalid(_WRONG_KIND)
        iat, nbf, exp = payload["iat"], payload["nbf"], payload["exp"]
        sid, auth_time = payload["sid"], payload["auth_time"]
        if (
            type(iat) is not int
            or type(nbf) is not int
            or type(exp) is not int
            or not isinstance(sid, str)
            or type(auth_time) not in (int, float)
        ):
            raise TokenInvalid(_INVALID)
        leeway = self._leeway
        if exp <= timestamp - leeway:
            raise TokenExpired()
        if nbf > timestamp + leeway or iat > timestamp + leeway:
            raise TokenInvalid(_IMMATURE)
        return Claims(
            sub=payload["sub"],
            jti=payload["jti"],
            sid=sid,
            type=kind,
            iat=iat,
            nbf=nbf,
            exp=exp,
            auth_time=float(auth_time),
            extra=MappingProxyType(
                {name: value for name, value in payload.items() if name not in RESERVED_CLAIMS}
            ),
        )

    def _registered_claims_hold(self, payload: dict[str, Any]) -> bool:
        """pyjwt's claim checks (``PyJWT._validate_claims``) with the options the codec needs.

        Every required claim present and not null; ``iss`` equal to the configured issuer;
        ``aud`` as pyjwt's ``strict_aud``: one string equal to the configured audience, and
        absent (or empty) when none is configured; ``sub`` and ``jti`` strings. Times are
        checked by :meth:`verify` against the caller's ``now``.
        """
        for name in self._required:
            if payload.get(name) is None:
                return False
        # JSON decodes to plain types, so equal to a configured str means a str.
        if self._issuer is not None and payload["iss"] != self._issuer:
            return False
        if self._audience is None:
            if payload.get("aud"):
                return False
        elif payload["aud"] != self._audience:
            return False
        return isinstance(payload["sub"], str) and isinstance(payload["jti"], str)
