"""JWT issue and verification over pyjwt: pinned algorithms, typed tokens, injected time.

pyjwt's public signature layer (:class:`jwt.PyJWS`) signs and verifies; the registered claims
the codec relies on are checked here, from the verified payload, so every check holds the
same on every pyjwt version the package allows.

Access tokens are signed with the key set's signing key, whose public half a JWKS may
publish. Refresh tokens are only ever read by this service, so they are signed with HS256
under a key derived from the policy secret (HKDF-SHA256) that is never published: a service
verifying access tokens from the JWKS cannot be handed a refresh token instead, whether or
not it checks ``typ``.

Pure: ``now`` and ``jti`` are parameters; nothing here reads the clock or draws randomness.
Every refusal is a :class:`~otpcore.domain.errors.TokenInvalid` or
:class:`~otpcore.domain.errors.TokenExpired` with a fixed message; pyjwt's own exceptions and
messages never leave this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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

# HKDF's `info` for the refresh-token key: names the key's one use, so the same secret
# derives unrelated keys for anything else.
_REFRESH_KEY_INFO: Final = b"otpcore refresh-token signing v1"
_REFRESH_ALGORITHM: Final = "HS256"
_REFRESH_ALGORITHMS: Final[tuple[str]] = (_REFRESH_ALGORITHM,)
# Token times are refused outside [0, year 3000): every accepted one converts to a datetime
# with room for the arithmetic callers do on it (a lifetime, the leeway) without overflow.
_MAX_TIME: Final = 32_503_680_000
# Generations are stored in 32-bit integer columns.
_MAX_GENERATION: Final = 2**31 - 1
# Claims whose presence depends on the kind or the configuration, checked per kind.
_OPTIONAL_CLAIMS: Final = frozenset({"iss", "aud", "gen", "client_id"})

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


def _refresh_signing_key(secret: bytes) -> bytes:
    """The HS256 key refresh tokens are signed with: HKDF-SHA256 of ``secret`` (RFC 5869).

    Derived, so no second secret needs configuring; never published in a JWKS.
    """
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_REFRESH_KEY_INFO).derive(secret)


def _time_in_range(value: object) -> bool:
    return type(value) is int and 0 <= value < _MAX_TIME


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

    Access tokens are signed with the key set's signing key. Refresh tokens are signed with
    HS256 under a key derived from ``policy.secret`` (HKDF-SHA256, never published), whatever
    the key set's algorithm.

    Args:
        keys: The signing key and the keys access tokens are accepted from.
        policy: The secret, lifetimes, ``iss``/``aud``/``client_id``, leeway and developer
            mode.

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
        "_refresh_jws",
        "_refresh_key",
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
        refresh_key = _refresh_signing_key(policy.secret)
        self._refresh_key = refresh_key
        self._refresh_jws = PyJWS(
            algorithms=[], options={"verify_signature": True, "enforce_minimum_key_length": True}
        )
        self._refresh_jws.register_algorithm(
            _REFRESH_ALGORITHM, _CheckedHMAC(_HASHES[_REFRESH_ALGORITHM], (refresh_key,))
        )
        # Present and not null, as pyjwt's `require` option means it.
        common = (
            RESERVED_CLAIMS - _OPTIONAL_CLAIMS
            | ({"iss"} if policy.issuer is not None else set())
            | ({"aud"} if policy.audience is not None else set())
        )
        self._required: dict[str, tuple[str, ...]] = {
            "access": tuple(sorted(common)),
            "refresh": tuple(sorted(common | {"gen"})),
        }
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
        # Refresh tokens name no kid: only this service reads them, with one key.
        self._headers = {
            "access": {"typ": _TYP["access"], **kid},
            "refresh": {"typ": _TYP["refresh"]},
        }
        fixed: dict[str, str] = {}
        if policy.issuer is not None:
            fixed["iss"] = policy.issuer
        if policy.audience is not None:
            fixed["aud"] = policy.audience
        client_id = policy.client_id
        self._fixed_claims: dict[str, dict[str, str]] = {
            # RFC 9068 §2.2: client_id names the client the access token was issued to.
            "access": {**fixed, "client_id": client_id} if client_id is not None else fixed,
            "refresh": fixed,
        }

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
        generation: int | None = None,
        expires_at: datetime | None = None,
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
            generation: The session's refresh generation, written as ``gen``; refresh tokens
                only (``None`` there means 0).
            expires_at: An earlier end than ``now`` plus the kind's lifetime (e.g. the
                session's absolute or idle end); a later one is ignored.

        Returns:
            The compact JWS.

        Raises:
            ReservedClaimError: ``extra`` names a reserved claim.
            ValueError: An unknown ``kind``, a ``generation`` on an access token or outside
                0 to 2**31 - 1.
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
        expires = int(timestamp + lifetime)
        if expires_at is not None:
            expires = min(expires, int(_timestamp(expires_at)))
        payload: dict[str, Any] = {
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": jti,
            "type": kind,
            "sid": sid,
            "auth_time": round(auth_time, 3),
            **self._fixed_claims[kind],
        }
        if kind == "refresh":
            gen = 0 if generation is None else generation
            if type(gen) is not int or not 0 <= gen <= _MAX_GENERATION:
                raise ValueError(f"generation must be an int in 0..2**31-1, got {generation!r}")
            payload["gen"] = gen
            key, algorithm, jws = self._refresh_key, _REFRESH_ALGORITHM, self._refresh_jws
        else:
            if generation is not None:
                raise ValueError("generation is carried by refresh tokens only")
            key, algorithm, jws = self._signing.key, self._signing.algorithm, self._jws
        if extra:
            payload.update(extra)
        # As pyjwt's PyJWT.encode serializes a payload (compact JSON, UTF-8).
        encoded = json.dumps(payload, separators=(",", ":")).encode()
        return jws.encode(encoded, key, algorithm=algorithm, headers=headers, sort_headers=False)

    def verify(self, token: str, *, kind: TokenKind, now: datetime) -> Claims:
        """Check a token's signature, kind, issuer, audience and times at ``now``.

        Access tokens are checked against the key the token names, with the algorithm pinned
        to that key, never the header's; refresh tokens against the derived refresh key.

        Args:
            token: The compact JWS as presented.
            kind: The kind the caller expects; the other kind is refused.
            now: The current instant (timezone-aware).

        Returns:
            The verified claims.

        Raises:
            TokenExpired: ``exp`` is at or before ``now`` minus the leeway.
            TokenInvalid: Anything else wrong: malformed, bad signature, unknown ``kid``,
                wrong kind, wrong ``iss``/``aud``, a missing claim, a claim of the wrong
                type or out of range (times outside 0 to year 3000, a non-finite or future
                ``auth_time``, ``gen`` not an int in 0 to 2**31 - 1), or ``nbf``/``iat``
                after ``now`` plus the leeway.
        """
        typ = _TYP.get(kind)
        if typ is None:
            raise ValueError(f"kind must be 'access' or 'refresh', got {kind!r}")
        timestamp = _timestamp(now)
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid(_INVALID)
        if kind == "refresh":
            jws, key, algorithms, kid = (
                self._refresh_jws,
                self._refresh_key,
                _REFRESH_ALGORITHMS,
                None,
            )
        else:
            entry = self._single
            if entry is None:
                entry = self._by_kid.get(_unverified_kid(token))
                if entry is None:
                    raise TokenInvalid(_INVALID)
            jws, key, algorithms, kid = self._jws, entry.key, entry.algorithms, entry.kid
        try:
            decoded = jws.decode_complete(token, key, algorithms=algorithms)
            payload: Any = json.loads(decoded["payload"])
        except Exception:
            # Fail closed: whatever pyjwt or the decoders raise on hostile input (including
            # UnicodeError on lone surrogates, RecursionError on deep JSON) is a refusal, and
            # none of its text escapes.
            raise TokenInvalid(_INVALID) from None
        header: dict[str, Any] = decoded["header"]
        if (
            not isinstance(payload, dict)
            or not self._registered_claims_hold(payload, kind)
            or header.get("kid", kid) != kid
            # RFC 7515 §4.1.11: no extension is understood here (pyjwt < 2.11 ignores crit).
            or "crit" in header
        ):
            raise TokenInvalid(_INVALID)
        if header.get("typ") != typ or payload["type"] != kind:
            raise TokenInvalid(_WRONG_KIND)
        iat, nbf, exp = payload["iat"], payload["nbf"], payload["exp"]
        sid, auth_time = payload["sid"], payload["auth_time"]
        leeway = self._leeway
        if (
            not _time_in_range(iat)
            or not _time_in_range(nbf)
            or not _time_in_range(exp)
            or not isinstance(sid, str)
            # JSON allows NaN and Infinity as numbers; bool is an int subclass.
            or type(auth_time) not in (int, float)
            or not math.isfinite(auth_time)
            or not 0 <= auth_time <= timestamp + leeway + 1
        ):
            raise TokenInvalid(_INVALID)
        gen = payload.get("gen")
        client_id = payload.get("client_id")
        if (kind == "refresh" and not (type(gen) is int and 0 <= gen <= _MAX_GENERATION)) or (
            kind == "access" and "gen" in payload
        ):
            raise TokenInvalid(_INVALID)
        if client_id is not None and not isinstance(client_id, str):
            raise TokenInvalid(_INVALID)
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
            gen=gen,
            client_id=client_id,
            extra=MappingProxyType(
                {name: value for name, value in payload.items() if name not in RESERVED_CLAIMS}
            ),
        )

    def _registered_claims_hold(self, payload: dict[str, Any], kind: str) -> bool:
        """pyjwt's claim checks (``PyJWT._validate_claims``) with the options the codec needs.

        Every required claim of ``kind`` present and not null; ``iss`` equal to the
        configured issuer; ``aud`` as pyjwt's ``strict_aud``: one string equal to the
        configured audience, and absent (or empty) when none is configured; ``sub`` and
        ``jti`` strings. Times are checked by :meth:`verify` against the caller's ``now``.
        """
        for name in self._required[kind]:
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
