"""cchain-agent: a local, read-only cache of secrets served over HTTP, for any language.

server.py serves it (with listen.py for sockets and tokens, and secrets.py for the cache and
prefetch); client.py is the standard-library client that `cchain` and `readcreds` use, and
imports nothing of the AWS stack.
"""
