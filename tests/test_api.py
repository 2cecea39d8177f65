"""The object API against moto: saving, reading, deleting, listing and setting up."""

from __future__ import annotations

import base64
from typing import Any

import boto3
import pytest
from helpers import KEY_ALIAS, PRINTABLE, PRINTABLE_NAMES, CallCounter, create_reference_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudchain import (
    CloudChain,
    CloudChainConfigError,
    Entry,
    IntegrityError,
    SecretNotFoundError,
    ValidationError,
)

NASTY = [
    "s3cr3t",
    "(*&*&*&^@#$)(_",
    "it's \"quoted\" and 'single'",
    "  spaces  around  ",
    "$HOME `id` $(rm -rf /) \\ backslash; | & > <",
    "pässwörd ✓ 密码 🔐",
    "line one\nline two\n",
    "tab\there#hash",
]


@pytest.mark.parametrize("secret", NASTY)
def test_saved_secret_reads_back_exactly_as_str(chain: CloudChain, secret: str) -> None:
    chain.save("billing", "alice", secret)
    value = chain.read("billing", "alice")
    assert value == secret
    assert type(value) is str


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=st.text(min_size=1, max_size=300), user=PRINTABLE_NAMES)
def test_any_text_round_trips(chain: CloudChain, secret: str, user: str) -> None:
    chain.save("svc", user, secret)
    assert chain.read("svc", user) == secret


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(user=st.text(min_size=1, max_size=40).filter(lambda u: not PRINTABLE.fullmatch(u)))
def test_a_new_name_with_a_control_character_is_refused(chain: CloudChain, user: str) -> None:
    with pytest.raises(ValidationError, match="control character") as info:
        chain.save("svc", user, "x")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    with pytest.raises(ValidationError, match="control character"):
        chain.import_secrets("svc", {user: "x"})


def test_save_overwrites_the_previous_value(chain: CloudChain) -> None:
    chain.save("billing", "alice", "one")
    chain.save("billing", "alice", "two")
    assert chain.read("billing", "alice") == "two"


def test_read_of_missing_secret_raises_not_found(chain: CloudChain) -> None:
    with pytest.raises(SecretNotFoundError, match=r"billing/nobody.*'safedb'"):
        chain.read("billing", "nobody")


def test_delete_removes_the_secret(chain: CloudChain) -> None:
    chain.save("billing", "alice", "x")
    chain.delete("billing", "alice")
    with pytest.raises(SecretNotFoundError):
        chain.read("billing", "alice")


def test_delete_of_missing_secret_raises_not_found(chain: CloudChain) -> None:
    with pytest.raises(SecretNotFoundError):
        chain.delete("billing", "nobody")


def test_list_is_sorted_and_filters_by_service_without_kms(
    chain: CloudChain, calls: CallCounter
) -> None:
    for service, user in [("web", "b"), ("billing", "z"), ("billing", "a"), ("web", "a")]:
        chain.save(service, user, "v")
    calls.operations.clear()
    assert list(chain.list()) == [
        Entry("billing", "a"),
        Entry("billing", "z"),
        Entry("web", "a"),
        Entry("web", "b"),
    ]
    assert [e.user for e in chain.list("web")] == ["a", "b"]
    assert list(chain.list("nothing")) == []
    assert calls.count("") > 0
    assert calls.operations == [op for op in calls.operations if op in ("Scan", "Query")]


def test_save_without_key_alias_says_where_to_set_it(aws: None) -> None:
    chain = CloudChain()
    with pytest.raises(CloudChainConfigError, match=r"keyalias.*CLOUDCHAIN_KEY_ALIAS.*--key-alias"):
        chain.save("billing", "alice", "x")


def test_read_needs_no_key_alias(chain: CloudChain) -> None:
    chain.save("billing", "alice", "x")
    assert CloudChain().read("billing", "alice") == "x"


def test_missing_table_names_region_and_suggests_checking_before_setup(aws: None) -> None:
    with pytest.raises(
        CloudChainConfigError, match=r"'absent'.*does not exist in region us-east-1"
    ) as info:
        CloudChain(tablename="absent").read("billing", "alice")
    assert info.value.hint is not None
    assert "--region" in info.value.hint and "before `cchain --setup`" in info.value.hint


def test_unknown_key_alias_is_a_config_error(chain: CloudChain) -> None:
    with pytest.raises(CloudChainConfigError, match=r"alias/nope"):
        CloudChain(keyalias="alias/nope").save("billing", "alice", "x")


def _copy_secret(dynamodb: Any, src: tuple[str, str], dst: tuple[str, str]) -> None:
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": src[0]}, "Username": {"S": src[1]}}
    )["Item"]
    item["Service"], item["Username"] = {"S": dst[0]}, {"S": dst[1]}
    dynamodb.put_item(TableName="safedb", Item=item)


@pytest.mark.parametrize(
    "dst", [("billing", "bob"), ("web", "alice")], ids=["other-user", "other-service"]
)
def test_read_of_swapped_ciphertext_is_refused(
    chain: CloudChain, dynamodb: Any, dst: tuple[str, str]
) -> None:
    chain.save("billing", "alice", "alice-secret")
    chain.save(*dst, "bob-secret")
    _copy_secret(dynamodb, ("billing", "alice"), dst)
    with pytest.raises(IntegrityError, match=rf"{dst[0]}/{dst[1]}") as info:
        chain.read(*dst)
    assert "alice-secret" not in str(info.value)


def test_read_of_tampered_ciphertext_is_refused(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "x")
    key = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    blob = bytearray(
        base64.b64decode(dynamodb.get_item(TableName="safedb", Key=key)["Item"]["Secret"]["S"])
    )
    blob[-1] ^= 0x01
    dynamodb.put_item(
        TableName="safedb", Item={**key, "Secret": {"S": base64.b64encode(bytes(blob)).decode()}}
    )
    with pytest.raises(IntegrityError):
        chain.read("billing", "alice")


def test_read_of_non_base64_secret_attribute_is_refused(chain: CloudChain, dynamodb: Any) -> None:
    key = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    dynamodb.put_item(TableName="safedb", Item={**key, "Secret": {"S": "not base64!"}})
    with pytest.raises(IntegrityError, match="malformed"):
        chain.read("billing", "alice")


def test_aws_cli_recovery_recipe_recovers_the_secret(
    chain: CloudChain, dynamodb: Any, kms: Any
) -> None:
    chain.save("billing", "alice", "(*&*&*&^@#$)(_")
    # 1. aws dynamodb get-item
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    )["Item"]
    # 2. base64-decode the Secret
    blob = base64.b64decode(item["Secret"]["S"])
    # 3. aws kms decrypt --encryption-context Service=billing,Username=alice,Version=<Version>
    context = {"Service": "billing", "Username": "alice", "Version": item["Version"]["N"]}
    plaintext = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    assert plaintext.decode("utf-8") == "(*&*&*&^@#$)(_"


def test_stored_item_holds_only_ciphertext(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "visible-if-broken")
    item = dynamodb.scan(TableName="safedb")["Items"][0]
    assert "visible-if-broken" not in repr(item)
    assert base64.b64decode(item["Secret"]["S"], validate=True)


def test_works_on_the_reference_create_table_table(aws: None, kms: Any) -> None:
    create_reference_table(boto3.client("dynamodb", region_name="us-east-1"), "safedb")
    chain = CloudChain(keyalias=KEY_ALIAS)
    result = chain.setup(create_key=True)
    assert result.table_created is False
    assert result.key_created is True
    chain.save("billing", "alice", "x")
    assert chain.read("billing", "alice") == "x"


def test_setup_twice_creates_nothing_the_second_time(aws: None, dynamodb: Any) -> None:
    chain = CloudChain(keyalias="alias/fresh")
    first = chain.setup(create_key=True)
    second = chain.setup(create_key=True)
    assert (first.table_created, first.key_created) == (True, True)
    assert (second.table_created, second.key_created) == (False, False)
    table = dynamodb.describe_table(TableName="safedb")["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "Service": "HASH",
        "Username": "RANGE",
    }


def test_setup_create_key_needs_an_alias(aws: None) -> None:
    with pytest.raises(CloudChainConfigError, match="alias"):
        CloudChain().setup(create_key=True)


def test_injected_session_decides_region(aws: None) -> None:
    session = boto3.Session(region_name="eu-west-1")
    chain = CloudChain(keyalias=KEY_ALIAS, session=session)
    chain.setup(create_key=True)
    chain.save("billing", "alice", "x")
    assert CloudChain(region_name="eu-west-1").read("billing", "alice") == "x"
    with pytest.raises(CloudChainConfigError):
        CloudChain(region_name="us-east-1").read("billing", "alice")


def test_region_defaults_to_aws_chain_then_us_east_1(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert CloudChain()._dynamodb.meta.region_name == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert CloudChain()._dynamodb.meta.region_name == "ap-south-1"
    assert CloudChain(region_name="eu-west-2")._kms.meta.region_name == "eu-west-2"


@pytest.mark.parametrize(
    ("endpoint", "kms_endpoint", "expected"),
    [
        ("http://127.0.0.1:4566", None, "http://127.0.0.1:4566"),
        ("http://127.0.0.1:4566", "http://127.0.0.1:9999", "http://127.0.0.1:9999"),
        ("https://dynamodb.us-east-1.amazonaws.com", None, "https://kms.us-east-1.amazonaws.com"),
        (None, None, "https://kms.us-east-1.amazonaws.com"),
    ],
)
def test_kms_endpoint_follows_a_local_endpoint_only(
    endpoint: str | None, kms_endpoint: str | None, expected: str
) -> None:
    chain = CloudChain(endpoint_url=endpoint, kms_endpoint_url=kms_endpoint)
    assert chain._kms.meta.endpoint_url == expected


def test_clients_are_built_once_and_reused(chain: CloudChain) -> None:
    assert chain._dynamodb is chain._dynamodb
    assert chain._kms is chain._kms


def test_repr_names_the_table_and_never_a_secret(chain: CloudChain) -> None:
    chain.save("billing", "alice", "hunter2")
    chain.read("billing", "alice")
    text = repr(chain)
    assert "safedb" in text
    assert KEY_ALIAS in text
    assert "hunter2" not in text
