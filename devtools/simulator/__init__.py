"""The upstream API simulator: three simulated APIs on 127.0.0.1 (``python -m devtools.simulator``).

``verdicts`` decides, purely, what each request is answered (endpoints, settings, faults);
``stats`` counts what was asked, within fixed bounds; ``server`` serves both over HTTP.
"""

from devtools.simulator.server import RunningSimulator, main, start_simulator
from devtools.simulator.stats import SimulatorStats

__all__ = ["RunningSimulator", "SimulatorStats", "main", "start_simulator"]
