"""The benchmark (``make bench``): scenarios in :mod:`.run`, arithmetic in :mod:`.stats`."""
