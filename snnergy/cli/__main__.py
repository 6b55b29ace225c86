"""``python -m snnergy.cli``: the ``snnergy`` command."""

import sys

from snnergy.cli import main

sys.exit(main())
