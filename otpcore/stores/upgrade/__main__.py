"""``python -m otpcore.stores.upgrade sqlite|postgresql``: print the upgrade script."""

import sys

from otpcore.stores.upgrade import sql_script

if __name__ == "__main__":
    print(sql_script(sys.argv[1] if len(sys.argv) > 1 else ""), end="")  # type: ignore[arg-type]
