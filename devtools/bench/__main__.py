"""``python -m devtools.bench``: see :mod:`devtools.bench.run`."""

import sys

from devtools.bench.run import main

sys.exit(main())
