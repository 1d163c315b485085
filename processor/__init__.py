"""Record validation stream processor: consumes CloudEvents records from Kafka, validates
each (schema, then upstream HTTP checks) and publishes every record's outcome to the
valid, invalid or dead-letter topic."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("record-processor")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
