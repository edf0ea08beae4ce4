"""The async orchestrators any framework calls: load through the ports, decide with the pure
core (:mod:`otpcore.domain`), write back with compare-and-set."""

from otpcore.service.auth import OTPAuth, RevocationSource
from otpcore.service.results import CodeRequest, Login, Principal, SessionView

__all__ = ["CodeRequest", "Login", "OTPAuth", "Principal", "RevocationSource", "SessionView"]
