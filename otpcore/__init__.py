"""otpcore: passwordless e-mail OTP authentication, as a sans-IO core.

The pure core (:mod:`otpcore.domain`, :mod:`otpcore.tokens`) decides; :class:`OTPAuth`
orchestrates it over the storage ports of :mod:`otpcore.ports`.
"""

from otpcore.domain.emails import InvalidEmail, normalize_email
from otpcore.domain.errors import OTPAuthError
from otpcore.domain.limits import Limits, Rate
from otpcore.domain.policy import Policy
from otpcore.service import CodeRequest, Login, OTPAuth, Principal, SessionView
from otpcore.tokens import Claims, KeySet, SigningKey, VerificationKey

__all__ = [
    "Claims",
    "CodeRequest",
    "InvalidEmail",
    "KeySet",
    "Limits",
    "Login",
    "OTPAuth",
    "OTPAuthError",
    "Policy",
    "Principal",
    "Rate",
    "SessionView",
    "SigningKey",
    "VerificationKey",
    "normalize_email",
]

__version__ = "0.1.0"
