"""`python -m modelops.registry COMMAND`: see `modelops.registry.cli`."""

import sys

from modelops.registry.cli import main

sys.exit(main())
