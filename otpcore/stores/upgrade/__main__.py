"""``python -m otpcore.stores.upgrade sqlite|postgresql [--sessions] [--abuse]``: print the
upgrade script (``--sessions``: only the sessions table; ``--abuse``: only the
pending-challenge and limit-counter tables; for databases already on otpcore)."""

import sys

from otpcore.stores.upgrade import sql_script

if __name__ == "__main__":
    arguments = sys.argv[1:]
    sessions_only = "--sessions" in arguments
    abuse_only = "--abuse" in arguments
    flags = {"--sessions", "--abuse"}
    dialect = next((argument for argument in arguments if argument not in flags), "")
    script = sql_script(dialect, sessions_only=sessions_only, abuse_only=abuse_only)  # type: ignore[arg-type]
    print(script, end="")
