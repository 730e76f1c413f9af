"""`python -m quantlab.cli ARGS` is `quantlab ARGS`."""

import sys

from quantlab.cli import main

sys.exit(main())
