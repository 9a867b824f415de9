"""``python -m aaa_fmip``: the same as the ``aaa-fmip`` command."""

import sys

from aaa_fmip.cli import main

sys.exit(main())
