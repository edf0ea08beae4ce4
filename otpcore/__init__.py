"""otpcore: passwordless e-mail OTP authentication, as a sans-IO core.

The pure modules (:mod:`~otpcore.challenge`, :mod:`~otpcore.tokens`, :mod:`~otpcore.sessions`)
decide; :class:`OTPAuth` orchestrates them over the storage ports of :mod:`otpcore.ports`.
"""

from otpcore.emails import InvalidEmail, normalize_email
from otpcore.errors import OTPAuthError
from otpcore.policy import Policy
from otpcore.service import Login, OTPAuth, Principal
from otpcore.tokens import Claims, KeySet, SigningKey, VerificationKey

__all__ = [
    "Claims",
    "InvalidEmail",
    "KeySet",
    "Login",
    "OTPAuth",
    "OTPAuthError",
    "Policy",
    "Principal",
    "SigningKey",
    "VerificationKey",
    "normalize_email",
]

__version__ = "0.1.0"
