"""The aiokafka boundary: the clients built from config, topics, and every aiokafka error.

The only package of the service that imports aiokafka (its modules: ``factory``,
``partitioner``, ``consumer``, ``transactional``, ``clients``, ``admin``, ``tools``). The rest
of the service sees partitions as ``(topic, partition)`` tuples, offsets as ints, records as
:class:`~processor.inputs.InputRecord`, and errors from :mod:`processor.errors`:

- :class:`KafkaClients`: the idempotent producer (``acks=all``, so a retried send never
  duplicates or reorders outcomes within a partition) and the group consumer of one
  instance, started and stopped together;
- :class:`KafkaConsumer`: what the intake calls (poll, pause, resume, commit, rebalance
  callbacks) plus the broker probe and the lag the status poller asks for;
- :class:`TransactionalProducers` (``delivery: exactly_once``): one transactional producer per
  assigned input partition, which commits that partition's outcomes with its input offsets;
- :func:`produce_lines`: publish lines as records (``processor produce``);
- :func:`ensure_topics`: create the input and outcome topics (tests, tools);
- :func:`create_or_find_topics`: ``processor topics create``: topics made as specified
  (partitions, replication factor, configs), or found and described.
"""

from processor.kafka.admin import (
    TopicFound,
    TopicSpec,
    create_or_find_topics,
    ensure_topics,
    message_size_limits,
    topic_partitions,
)
from processor.kafka.clients import KafkaClients
from processor.kafka.consumer import KafkaConsumer, RebalanceHandler
from processor.kafka.factory import STOP_TIMEOUT_S, TP, OutcomeProducer, is_record_refusal
from processor.kafka.tools import RecordSender, TopicReader, produce_lines
from processor.kafka.transactional import TransactionalProducers, is_fenced

__all__ = [
    "STOP_TIMEOUT_S", "TP", "KafkaClients", "KafkaConsumer", "OutcomeProducer",
    "RebalanceHandler", "RecordSender", "TopicFound", "TopicReader", "TopicSpec",
    "TransactionalProducers", "create_or_find_topics", "ensure_topics", "is_fenced",
    "is_record_refusal", "message_size_limits", "produce_lines", "topic_partitions",
]  # fmt: skip
