"""`python -m gateway.cli`: the `pdx` command."""

import sys

from gateway.cli import main

sys.exit(main())
