"""``python -m otpcore.stores.upgrade sqlite|postgresql [--sessions]``: print the upgrade
script (``--sessions``: only the sessions table, for databases already on otpcore)."""

import sys

from otpcore.stores.upgrade import sql_script

if __name__ == "__main__":
    arguments = sys.argv[1:]
    sessions_only = "--sessions" in arguments
    dialect = next((argument for argument in arguments if argument != "--sessions"), "")
    print(sql_script(dialect, sessions_only=sessions_only), end="")  # type: ignore[arg-type]
