"""The ``otpcore`` command, run as a subprocess against the fixture apps in ``apps``."""
