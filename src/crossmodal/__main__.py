"""``python -m crossmodal``: the same as the ``crossmodal`` command."""

import sys

from crossmodal.cli.main import main

sys.exit(main())
