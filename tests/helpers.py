"""Helpers shared by the tests (tests/ is on sys.path through pytest's rootdir handling)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from hypothesis import strategies as st

KEY_ALIAS = "alias/test"

# Values that break naive quoting, by name: every export format must carry them exactly.
NASTY_VALUES = {
    "single-quote": "it's",
    "double-quote": 'say "hi"',
    "dollar": "pa$$word $HOME ${HOME} $(id)",
    "backslash": "C:\\new\\table\\",
    "newline": "line one\nline two\n",
    "hash": "value # not a comment",
    "spaces": "  padded  ",
    "unicode": "pässwörd ✓ 密码 🔐",
    "backtick": "`id` and $(id)",
    "quotes-and-dollars": 'it\'s "$HOME" \\n ${X:-y}',
    "equals": "a=b=c",
    "crlf": "dos\r\nline",
    "dollars-no-brace": 'pa$$word $HOME $(id) `id` "q"',
    "quote-and-backslash": 'it\'s "q" C:\\dir\\x',
}
# What dotenv refuses, each for its reason (see cloudchain.formats.dotenv): every other value above is
# written so that sh, bash and python-dotenv read it back exactly.
DOTENV_REFUSED = {
    "dollar": "'${'",  # python-dotenv expands ${...} from the reader's environment
    "quotes-and-dollars": "'${'",
    "crlf": "carriage return",
}


# Names cloudchain accepts for new secrets: no control or direction-changing characters.
PRINTABLE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+")
PRINTABLE_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf")),
    min_size=1,
    max_size=40,
)


class CallCounter:
    """Counts the AWS operations a botocore client makes, by registering on its event system."""

    def __init__(self, *clients: Any) -> None:
        self.operations: list[str] = []
        for client in clients:
            client.meta.events.register("before-call.*.*", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)

    def count(self, prefix: str = "") -> int:
        return sum(1 for name in self.operations if name.startswith(prefix))


def create_reference_table(client: Any, name: str) -> None:
    """Create a table exactly as the reference `aws dynamodb create-table` command does."""
    # aws dynamodb create-table --table-name NAME --attribute-definitions
    #   AttributeName=Service,AttributeType=S AttributeName=Username,AttributeType=S
    #   --key-schema AttributeName=Service,KeyType=HASH AttributeName=Username,KeyType=RANGE
    #   --provisioned-throughput ReadCapacityUnits=1,WriteCapacityUnits=1
    client.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "Service", "AttributeType": "S"},
            {"AttributeName": "Username", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "Service", "KeyType": "HASH"},
            {"AttributeName": "Username", "KeyType": "RANGE"},
        ],
        ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
    )


def replicate_key_in_moto(kms: Any, key_id: str, region: str, replica_kms: Any) -> None:
    """ReplicateKey as moto does it: it copies the key (even an ordinary one, which unlike a
    multi-Region key decrypts in moto) into region, then fails to describe the copy. The copy
    is checked, so a moto that stops copying fails the test here."""
    with contextlib.suppress(Exception):
        kms.replicate_key(KeyId=key_id, ReplicaRegion=region)
    replica_kms.describe_key(KeyId=key_id)
