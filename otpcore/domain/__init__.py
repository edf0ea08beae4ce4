"""The pure core: every decision about who gets in, as functions over frozen records.

No I/O, no clock, no randomness, no framework or driver: ``now`` and random sources are
parameters. :mod:`~otpcore.domain.records` holds the shared records; the modules beside it
decide (:mod:`~otpcore.domain.challenge`, :mod:`~otpcore.domain.sessions`).
"""

__all__: list[str] = []
