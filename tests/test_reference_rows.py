"""A reference row (Service, Username, Secret only) that gains row attributes other than by a
save: its version is bound to its row first, or it would no longer decrypt."""

from __future__ import annotations

import base64
from typing import Any

from helpers import KEY_ALIAS

from cloudchain import CloudChain


def test_tagging_a_reference_row_keeps_it_readable(
    chain: CloudChain, kms: Any, dynamodb: Any
) -> None:
    blob = kms.encrypt(KeyId=KEY_ALIAS, Plaintext=b"legacy", EncryptionContext={})
    secret = base64.b64encode(blob["CiphertextBlob"]).decode()
    reference = {"Service": {"S": "old"}, "Username": {"S": "u"}, "Secret": {"S": secret}}
    dynamodb.put_item(TableName="safedb", Item=reference)
    assert chain.set_tags("old", "u", {"team": "a"}) == {"team": "a"}
    assert chain.read("old", "u") == "legacy"
