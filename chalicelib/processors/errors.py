"""What a processor's webhook verification says about a delivery, for every processor
(chalicelib.webhooks answers both with 400 and writes nothing)."""
from __future__ import annotations


class InvalidSignature(Exception):
    pass


class MalformedPayload(Exception):
    pass
