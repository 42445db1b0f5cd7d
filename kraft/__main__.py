"""`python -m kraft ...`: the `kraft` command."""

import sys

from kraft.cli import main

sys.exit(main())
