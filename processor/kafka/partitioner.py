"""The producers' partitioner: aiokafka's own, with each key's hash remembered.

aiokafka's ``DefaultPartitioner`` hashes every keyed record's key with murmur2 written in
Python (the Java client's hash, so both put a key in the same partition): 6 to 9 µs for a
9-byte key on the bench machine, once per outcome. An outcome is keyed like its input, and
keys repeat (per-key ordering exists because they do), so the masked hash of each short key
is kept, in a bounded table that starts over when full: 0.6 µs on a hit. The partition is
the one ``DefaultPartitioner`` picks, always: ``all_partitions[hash % len(all_partitions)]``
(``tests/unit/test_kafka_partitioner.py`` compares the two); a record without a key still
goes to a random available partition, by ``DefaultPartitioner`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.partitioner import DefaultPartitioner, murmur2

#: Keys longer than this are hashed every time (memory stays bounded by count x length).
MAX_KEY_BYTES = 64
#: Hashes kept at most (about 2.5 MB with keys of MAX_KEY_BYTES); the table starts over when full.
MAX_KEYS = 16_384

_DEFAULT = DefaultPartitioner()


class KeyHashPartitioner:
    """``DefaultPartitioner``'s choice, with the murmur2 hash of each short key remembered."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._max_keys = max_keys
        self._hashes: dict[bytes, int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if type(key) is not bytes:  # None (random), or a bytes-like key (not hashable)
            return _DEFAULT(key, all_partitions, available)  # type: ignore[no-any-return]
        masked = self._hashes.get(key)
        if masked is None:
            masked = murmur2(key) & 0x7FFFFFFF
            if len(key) <= MAX_KEY_BYTES:
                if len(self._hashes) >= self._max_keys:
                    self._hashes.clear()
                self._hashes[key] = masked
        return all_partitions[masked % len(all_partitions)]
