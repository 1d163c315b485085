"""What ``processor topics create`` makes: partitions, replication factor and topic configs,
shared by the four topics with per-topic overrides (``kafka.topic_settings``).

A leaf of the configuration, apart from :mod:`processor.config` so that the config module
stays readable; frozen and closed to unknown keys like every config section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: The four topics by what they carry (keys of ``kafka.topic_settings.per_topic``).
TopicRole = Literal["input", "valid", "invalid", "dead_letter"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicOverride(_Frozen):
    """One topic's departures from :class:`TopicSettings` (unset: the shared value)."""

    partitions: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    configs: dict[str, str | int] = Field(default_factory=dict)


class TopicSettings(_Frozen):
    """What ``processor topics create`` makes, and expects of the topics that exist."""

    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    configs: dict[str, str | int] = Field(
        default_factory=dict,
        description="topic configs of every new topic: retention.ms, min.insync.replicas, "
        "cleanup.policy, ...",
    )
    per_topic: dict[TopicRole, TopicOverride] = Field(
        default_factory=dict, description="input|valid|invalid|dead_letter -> its overrides"
    )

    def spec(self, role: TopicRole) -> tuple[int, int, dict[str, str]]:
        """Partitions, replication factor and configs (as strings) of the topic ``role``."""
        own = self.per_topic.get(role, TopicOverride())
        configs = {k: str(v) for k, v in {**self.configs, **own.configs}.items()}
        return (own.partitions or self.partitions,
                own.replication_factor or self.replication_factor, configs)  # fmt: skip
