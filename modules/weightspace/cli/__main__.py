"""`python -m weightspace.cli ...`: the `weightspace` command without its console script."""

import sys

from weightspace.cli import main

sys.exit(main())
