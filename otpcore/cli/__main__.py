"""``python -m otpcore.cli``: the ``otpcore`` command."""

from otpcore.cli import main

raise SystemExit(main())
