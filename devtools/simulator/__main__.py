"""``python -m devtools.simulator``: serve the simulated APIs until SIGTERM/SIGINT."""

from devtools.simulator.server import main

raise SystemExit(main())
