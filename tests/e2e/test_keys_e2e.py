"""Large and binary secrets, key rotation, legacy rows and policies through the installed cchain."""

from __future__ import annotations

import base64
import json
import os
import random

import pytest
from faultproxy import FaultProxy
from helpers import KEY_ALIAS
from support import Emulator

from cloudchain import CloudChain

pytestmark = pytest.mark.e2e
ROW = ["-u", "alice", "-e", "billing"]


def test_binary_secret_round_trips_exactly(emulator: Emulator) -> None:
    blob = bytes(range(256)) + b"\n\n\x00" + os.urandom(64) + b"\n"
    assert emulator.run(*ROW, "--save", "-", "--binary", stdin=blob).code == 0
    result = emulator.run(*ROW, "--read")
    assert result.code == 0
    assert result.raw_out == blob  # raw bytes, no newline added, none stripped


def test_non_utf8_stdin_without_binary_is_refused(emulator: Emulator) -> None:
    result = emulator.run(*ROW, "--save", "-", stdin=b"\xff\xfe")
    assert result.code == 2
    assert "not UTF-8" in result.err


def test_large_text_secret_round_trips(emulator: Emulator) -> None:
    rng = random.Random(5)
    text = "".join(rng.choice("abc $'\"\\#é😀\n") for _ in range(100_000))
    assert len(text.encode()) > 256 * 1024 // 2
    assert emulator.run(*ROW, "--save", "-", stdin=text + "\n").code == 0
    assert emulator.run(*ROW, "--read", "-n").raw_out == text.encode()
    item = emulator.client("dynamodb").get_item(
        TableName="safedb", Key={"Service": {"S": "billing"}, "Username": {"S": "alice"}}
    )["Item"]
    assert item["Scheme"] == {"S": "envelope-v1"}


def test_too_large_secret_is_refused_before_any_aws_call(emulator: Emulator) -> None:
    result = emulator.run(
        *ROW, "--save", "-", "--binary", "--endpoint-url", "http://127.0.0.1:9",
        stdin=b"x" * (384 * 1024 + 1),
    )  # fmt: skip
    assert result.code == 2
    assert "the limit is 393216" in result.err


def test_export_of_binary_secrets(emulator: Emulator) -> None:
    chain = CloudChain(endpoint_url=emulator.url, keyalias=KEY_ALIAS)
    chain.save("app", "cert", b"\x00\x01binary")
    chain.save("app", "token", "t")
    exported = emulator.run("-e", "app", "--export")
    assert json.loads(exported.out) == {
        "cert": {"base64": base64.b64encode(b"\x00\x01binary").decode()},
        "token": "t",
    }
    for fmt in ("dotenv", "env"):
        refused = emulator.run("-e", "app", "--export", "--format", fmt)
        assert (refused.code, refused.out) == (1, "")
        assert "CERT (user 'cert') is a binary secret" in refused.err
        assert "--binary base64" in refused.err
    copy = emulator.run("-e", "copy", "--import", "-", stdin=exported.out)
    assert copy.code == 0, copy.err
    assert chain.read("copy", "cert") == b"\x00\x01binary"


def _disable_key_a(key_id: str):  # type: ignore[no-untyped-def]
    """KMS refuses every call on a disabled key; moto does not, so the proxy does."""

    def policy(operation: str, count: int, body: bytes) -> str:
        if operation in ("Decrypt", "ReEncrypt"):
            blob = base64.b64decode(json.loads(body)["CiphertextBlob"])
            if blob.startswith(key_id.encode()):  # moto's blobs begin with their key id
                return "disabled"
        return "forward"

    return policy


def test_key_rotation_acceptance(emulator: Emulator) -> None:
    versions = ["v1", "v2", "x" * 6000, "v4"]
    for value in versions:
        assert emulator.run(*ROW, "--save", "-", stdin=value).code == 0
    emulator.run("-u", "bob", "-e", "web", "--save", "-", "--binary", stdin=b"\x00bin")
    kms = emulator.client("kms")
    key_a = kms.describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["KeyId"]
    assert emulator.run("--setup", "--create-key", "--key-alias", "alias/key-b").code == 0

    with FaultProxy(int(emulator.url.rsplit(":", 1)[1]), _disable_key_a(key_a)) as proxy:
        through = Emulator(proxy.url, {**emulator.env, "CLOUDCHAIN_ENDPOINT_URL": proxy.url})
        before = through.run(*ROW, "--read")
        assert before.code == 1, "the proxy must refuse key A, or this test proves nothing"
        assert "disabled" in before.err

        rotated = emulator.run("--reencrypt", "--key-alias", "alias/key-b")
        assert rotated.code == 0, rotated.err
        assert "\ncchain: re-encrypted 2, already current 0, failed 0\n" in "\n" + rotated.err
        kms.disable_key(KeyId=key_a)

        for n, value in enumerate(versions, start=1):
            read = through.run(*ROW, "--read", "--secret-version", str(n), "-n")
            assert (read.code, read.out) == (0, value), read.err
        assert through.run("-u", "bob", "-e", "web", "--read").raw_out == b"\x00bin"
    again = emulator.run("--reencrypt", "--key-alias", "alias/key-b")
    assert "cchain: re-encrypted 0, already current 2, failed 0\n" in again.err


def test_legacy_rows_through_the_cli_before_and_after_reencrypt(emulator: Emulator) -> None:
    kms, dynamodb = emulator.client("kms"), emulator.client("dynamodb")
    contexts = {
        "row": {"Service": "old", "Username": "row"},
        "0.x": {"string": "string"},
        "none": {},
    }
    for user, context in contexts.items():
        blob = kms.encrypt(
            KeyId=KEY_ALIAS, Plaintext=f"legacy {user}".encode(), EncryptionContext=context
        )
        dynamodb.put_item(
            TableName="safedb",
            Item={"Service": {"S": "old"}, "Username": {"S": user},
                  "Secret": {"S": base64.b64encode(blob["CiphertextBlob"]).decode()}},
        )  # fmt: skip
    assert (
        emulator.run("-l", "-e", "old").out
        == "old\t0.x\tlegacy\nold\tnone\tlegacy\nold\trow\tlegacy\n"
    )
    for user in contexts:
        assert emulator.run("-u", user, "-e", "old", "--read").out == f"legacy {user}\n"
        refused = emulator.run("-u", user, "-e", "old", "--read", "--no-legacy")
        assert (refused.code, refused.out) == (1, "")
        assert f"old/{user} version 1 in table 'safedb' is a legacy row" in refused.err
        assert "--reencrypt" in refused.err
    strict = emulator.run("-u", "row", "-e", "old", "--read", env={"CLOUDCHAIN_ALLOW_LEGACY": "0"})
    assert strict.code == 1
    result = emulator.run("--reencrypt", "-e", "old")
    assert "cchain: re-encrypted 3, already current 0, failed 0\n" in result.err
    assert "no legacy rows are left in service old" in result.err
    assert emulator.run("-l", "-e", "old").out == "old\t0.x\nold\tnone\nold\trow\n"
    for user in contexts:
        read = emulator.run("-u", user, "-e", "old", "--read", "--no-legacy")
        assert read.out == f"legacy {user}\n"
    whole = emulator.run("--reencrypt")
    assert "allow_legacy = false (--no-legacy) is safe to set" in whole.err
    # The README's AWS CLI recipe on a formerly legacy row: get-item, base64 -d, kms decrypt.
    item = dynamodb.get_item(
        TableName="safedb", Key={"Service": {"S": "old"}, "Username": {"S": "0.x"}}
    )["Item"]
    plaintext = kms.decrypt(
        CiphertextBlob=base64.b64decode(item["Secret"]["S"]),
        EncryptionContext={"Service": "old", "Username": "0.x", "Version": item["Version"]["N"]},
    )["Plaintext"]
    assert plaintext == b"legacy 0.x"


def test_policy_offline_and_resolved(emulator: Emulator) -> None:
    arn = "arn:aws:kms:eu-west-1:111122223333:key/k"
    offline = emulator.run(
        "-e", "billing", "--policy", "read", "--account", "111122223333", "--key-arn", arn,
        "--region", "eu-west-1", "--endpoint-url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert offline.code == 0, offline.err
    document = json.loads(offline.out)
    assert (
        document["Statement"][0]["Resource"]
        == "arn:aws:dynamodb:eu-west-1:111122223333:table/safedb"
    )
    assert document["Statement"][1]["Condition"] == {
        "StringEquals": {"kms:EncryptionContext:Service": "billing"}
    }
    resolved = json.loads(emulator.run("-e", "billing", "--policy", "write").out)
    key_arn = emulator.client("kms").describe_key(KeyId=KEY_ALIAS)["KeyMetadata"]["Arn"]
    assert resolved["Statement"][1]["Resource"] == key_arn
    assert resolved["Statement"][1]["Action"] == [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]
    assert ":123456789012:table/safedb" in resolved["Statement"][0]["Resource"]
    assert emulator.run("--policy", "read").code == 2
