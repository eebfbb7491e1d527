"""`python -m pdx_client.cli`."""

import sys

from pdx_client.cli import main

sys.exit(main())
