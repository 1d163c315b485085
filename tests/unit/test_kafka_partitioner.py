"""The producers' partitioner picks the partition aiokafka's DefaultPartitioner picks."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from processor.config import KafkaConfig
from processor.kafka.factory import producer_kwargs
from processor.kafka.partitioner import MAX_KEY_BYTES, KeyHashPartitioner

DEFAULT = DefaultPartitioner()


def _key(rng: random.Random) -> bytes:
    size = rng.choice((0, 1, 2, 3, 4, 5, 9, 16, MAX_KEY_BYTES, MAX_KEY_BYTES + 1, 300))
    return rng.randbytes(size)


def test_every_key_goes_where_the_default_partitioner_sends_it() -> None:
    """5,000 random keys (short, long, repeated) over changing partition lists: the same
    partition as DefaultPartitioner, also after the table of hashes started over."""
    rng = random.Random(15)
    partitioner = KeyHashPartitioner(max_keys=500)
    keys = [_key(rng) for _ in range(2_000)]
    for _ in range(5_000):
        key = rng.choice(keys)
        partitions = sorted(rng.sample(range(64), rng.randrange(1, 64)))
        available = partitions[: rng.randrange(len(partitions) + 1)]
        assert partitioner(key, partitions, available) == DEFAULT(key, partitions, available)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    """No key: a random available partition (any partition when none is available)."""
    partitioner = KeyHashPartitioner()
    assert {partitioner(None, [0, 1, 2, 3], [2]) for _ in range(50)} == {2}
    assert {partitioner(None, [0, 1], []) for _ in range(200)} == {0, 1}


def test_every_producer_is_built_with_it() -> None:
    """The outcome producer and each transactional producer use the caching partitioner."""
    kwargs = producer_kwargs(KafkaConfig())
    assert isinstance(kwargs["partitioner"], KeyHashPartitioner)
    assert producer_kwargs(KafkaConfig())["partitioner"] is not kwargs["partitioner"]
