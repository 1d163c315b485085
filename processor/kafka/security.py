"""``kafka.security`` as aiokafka client arguments, the same for every client of the service
(producers, the group consumer, admin clients, the redrive reader), and the OAUTHBEARER hook
over our token sources (:mod:`processor.kafka_auth`)."""

from __future__ import annotations

from typing import Any

from aiokafka.abc import AbstractTokenProvider

from processor.config import KafkaSecurity
from processor.kafka_auth import ClientCredentialsToken, FileToken, TokenSource, ssl_context


class _TokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's OAUTHBEARER hook over one of our token sources."""

    def __init__(self, source: TokenSource) -> None:
        self._source = source

    async def token(self) -> str:
        return await self._source.token()


def security_kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    """The aiokafka client arguments for ``kafka.security`` (None: plaintext).

    Raises:
        ConfigError: A certificate, key or secret file cannot be read.
    """
    if security is None:
        return {}
    kwargs: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(security.tls)
    sasl = security.sasl
    if sasl is None:
        return kwargs
    kwargs["sasl_mechanism"] = sasl.mechanism
    if sasl.token_file is not None:
        kwargs["sasl_oauth_token_provider"] = _TokenProvider(FileToken(sasl.token_file))
    elif sasl.client_credentials is not None:
        source = ClientCredentialsToken(sasl.client_credentials)
        kwargs["sasl_oauth_token_provider"] = _TokenProvider(source)
    else:
        assert sasl.password is not None
        kwargs["sasl_plain_username"] = sasl.username
        kwargs["sasl_plain_password"] = sasl.password.read().get_secret_value()
    return kwargs
