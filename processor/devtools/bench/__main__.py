"""``python -m processor.devtools.bench``: see :mod:`processor.devtools.bench.run`."""

import sys

from processor.devtools.bench.run import main

sys.exit(main())
