"""The validation API: the stream's rules over HTTP (issue 14).

``errors`` owns the one error shape, ``protection`` the request guards (body limit, API keys,
request signing, layered rate limits, idempotency, request ids, timeouts); the application and
its routes are built on top of them.
"""
