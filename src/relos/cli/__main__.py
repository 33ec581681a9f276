"""``python -m relos.cli``: the same as the ``relos`` command."""

import os
import sys

# `python -m` puts the working directory first on sys.path, which the `relos`
# script does not: drop it so both import (and run) exactly the same code.
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from relos.cli import main  # noqa: E402

main(prog_name="relos")
