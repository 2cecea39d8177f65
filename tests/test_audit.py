"""Who changed a secret, when and why; tags; the redacted diff; the recoverable delete (moto)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import KEY_ALIAS, CallCounter

from cloudchain import CloudChain, SecretNotFoundError, ValidationError
from cloudchain.diff import changed_lines, summary
from cloudchain.identity import CallerIdentity

MOTO_ARN = "arn:aws:sts::123456789012:user/moto"
KEY = {"Service": {"S": "billing"}, "Username": {"S": "alice"}}


def _item(dynamodb: Any) -> dict[str, Any]:
    return dynamodb.get_item(TableName="safedb", Key=KEY)["Item"]


def _who(chain: CloudChain) -> list[tuple[int, str | None, str | None, str | None]]:
    return [(v.version, v.saved_by, v.action, v.comment) for v in chain.history("billing", "alice")]


# -- who, when, why -------------------------------------------------------------------------------


def test_every_write_records_who_how_and_why(chain: CloudChain) -> None:
    chain.save("billing", "alice", "one", comment="first password")
    chain.save("billing", "alice", "two")
    chain.rollback("billing", "alice", 1, comment="two broke the nightly job")
    chain.delete("billing", "alice", comment="alice left")
    chain.undelete("billing", "alice", comment="alice is back")
    chain.import_secrets("billing", {"alice": "three", "bob": "b"}, comment="quarterly rotation")
    assert _who(chain) == [
        (6, MOTO_ARN, "import", "quarterly rotation"),
        (5, MOTO_ARN, "undelete", "alice is back"),
        (4, MOTO_ARN, "delete", "alice left"),
        (3, MOTO_ARN, "rollback", "two broke the nightly job"),
        (2, MOTO_ARN, "save", None),
        (1, MOTO_ARN, "save", "first password"),
    ]
    assert all(v.saved_at for v in chain.history("billing", "alice"))


def test_sts_is_asked_once_per_chain(chain: CloudChain) -> None:
    calls = CallCounter(chain._clients.get("sts", quick=True))
    for n in range(3):
        chain.save("billing", "alice", f"v{n}")
    chain.import_secrets("billing", {f"u{n}": "x" for n in range(5)})
    assert calls.count("GetCallerIdentity") == 1


def test_a_failing_sts_records_unknown_and_never_fails_the_save() -> None:
    def refused() -> Any:
        raise RuntimeError("AccessDenied")

    identity = CallerIdentity(refused)
    assert identity.arn() == "unknown"
    assert identity.arn() == "unknown"


def test_reencrypt_keeps_who_when_and_why(chain: CloudChain) -> None:
    chain.save("billing", "alice", "one", comment="why one")
    chain.save("billing", "alice", "two", comment="why two")
    before = chain.history("billing", "alice")
    CloudChain(keyalias="alias/new").setup(create_key=True)
    assert CloudChain(keyalias="alias/new").reencrypt().reencrypted == 1
    assert chain.history("billing", "alice") == before


@pytest.mark.parametrize(
    ("comment", "message"),
    [("x" * 257, "at most 256 characters"), ("line\nbreak", "control character"),
     ("tab\there", "control character"), (7, "must be a str")],
)  # fmt: skip
def test_a_bad_comment_is_refused_before_any_aws_call(comment: Any, message: str) -> None:
    offline = CloudChain(endpoint_url="http://127.0.0.1:9", keyalias=KEY_ALIAS)
    for write in (
        lambda: offline.save("billing", "alice", "x", comment=comment),
        lambda: offline.rollback("billing", "alice", 1, comment=comment),
        lambda: offline.delete("billing", "alice", comment=comment),
        lambda: offline.undelete("billing", "alice", comment=comment),
        lambda: offline.import_secrets("billing", {"a": "x"}, comment=comment),
    ):
        with pytest.raises(ValidationError, match=message):
            write()


def test_rows_written_before_these_attributes_read_as_before(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "old")
    item = _item(dynamodb)
    for name in ("SavedBy", "Action", "Comment"):
        item.pop(name, None)
    dynamodb.put_item(TableName="safedb", Item=item)
    assert chain.read("billing", "alice") == "old"
    assert _who(chain) == [(1, None, None, None)]


# -- tags -----------------------------------------------------------------------------------------


def test_tags_are_set_on_the_secret_filtered_on_and_never_call_kms(
    chain: CloudChain, calls: CallCounter
) -> None:
    chain.save("billing", "alice", "a", tags={"env": "prod", "team": "pay"})
    chain.save("billing", "alice", "a2")  # a save without tags keeps them
    chain.save("billing", "bob", "b", tags={"env": "dev"})
    chain.save("web", "carol", "c", tags={"env": "prod"})
    calls.operations.clear()
    prod = [(e.service, e.user) for e in chain.list(tags={"env": "prod"})]
    assert prod == [("billing", "alice"), ("web", "carol")]
    assert [e.user for e in chain.list("billing", tags={"env": "prod", "team": "pay"})] == ["alice"]
    assert list(chain.list(tags={"env": "prod", "team": "nope"})) == []
    assert next(iter(chain.list("billing"))).tags == {"env": "prod", "team": "pay"}
    assert calls.count("Decrypt") == calls.count("Encrypt") == 0
    assert chain.export("billing", tags={"env": "prod"}) == {"alice": "a2"}


def test_tags_change_without_a_version_and_untag_removes(chain: CloudChain) -> None:
    chain.save("billing", "alice", "a", tags={"env": "prod", "old": "x"})
    assert chain.set_tags("billing", "alice", {"owner": "pay"}, untag=["old"]) == {
        "env": "prod",
        "owner": "pay",
    }
    assert [v.version for v in chain.history("billing", "alice")] == [1]
    chain.save("billing", "alice", "b", untag=["env"])
    assert chain.tags("billing", "alice") == {"owner": "pay"}


def test_tags_already_so_cost_one_read_and_no_write(chain: CloudChain, calls: CallCounter) -> None:
    chain.save("billing", "alice", "a", tags={"env": "prod"})
    calls.operations.clear()
    assert chain.set_tags("billing", "alice", {"env": "prod"}, untag=["absent"]) == {"env": "prod"}
    assert calls.operations == ["GetItem"]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"": "x"}, "1 to 128 characters"),
        ({"k" * 129: "x"}, "1 to 128 characters"),
        ({"spa ce": "x"}, "1 to 128 characters"),
        ({"k": "v" * 257}, "at most 256 characters"),
        ({"k": "a\nb"}, "control character"),
        ({f"k{n}": "v" for n in range(51)}, "at most 50 tags"),
    ],
)
def test_bad_tags_are_refused_before_any_aws_call(tags: dict[str, str], message: str) -> None:
    offline = CloudChain(endpoint_url="http://127.0.0.1:9", keyalias=KEY_ALIAS)
    with pytest.raises(ValidationError, match=message):
        offline.save("billing", "alice", "x", tags=tags)
    with pytest.raises(ValidationError, match=message):
        offline.list(tags=tags).__next__()


def test_allowed_tag_keys_and_the_limit_across_saves(chain: CloudChain) -> None:
    key = "aws:Name/x_y.z=1+2@3-4:" + "k" * 100
    chain.save("billing", "alice", "a", tags={key: "v", **{f"t{n}": "v" for n in range(49)}})
    with pytest.raises(ValidationError, match="at most 50 tags, not 51"):
        chain.save("billing", "alice", "b", tags={"one-more": "v"})
    assert chain.read("billing", "alice") == "a"


# -- the redacted diff ----------------------------------------------------------------------------


def test_diff_defaults_to_previous_and_current_and_holds_no_value(chain: CloudChain) -> None:
    chain.save("billing", "alice", "host=db\nuser=app\npass=one\n")
    chain.save("billing", "alice", "host=db\nuser=app\npass=two-longer\n")
    chain.save("billing", "alice", "host=db\nuser=app\npass=two-longer\n")
    result = chain.diff("billing", "alice")
    assert (result.from_version, result.to_version, result.changed) == (2, 3, False)
    result = chain.diff("billing", "alice", 1)
    assert (result.from_version, result.to_version, result.changed) == (1, 3, True)
    assert (result.from_bytes, result.to_bytes, result.changed_lines) == (26, 33, (3,))
    assert summary(result) == "v1 -> v3: changed, 26 -> 33 bytes, 3 -> 3 lines, lines changed: 3"
    assert "two" not in repr(result) and "one" not in repr(result)
    assert chain.diff("billing", "alice", 2, 1).changed_lines == (3,)


def test_diff_of_binary_secrets_compares_bytes_only(chain: CloudChain) -> None:
    chain.save("billing", "alice", b"\x00\x01\n\x02")
    chain.save("billing", "alice", b"\x00\x01\n\x03\x04")
    result = chain.diff("billing", "alice")
    assert (result.changed, result.binary, result.changed_lines) == (True, True, ())
    assert summary(result) == "v1 -> v2: changed, 4 -> 5 bytes (binary: compared by bytes only)"


def test_diff_of_a_pruned_or_missing_version_names_the_retained(chain: CloudChain) -> None:
    small = CloudChain(keyalias=KEY_ALIAS, history_size=2)
    for n in range(4):
        small.save("billing", "alice", f"v{n}")
    with pytest.raises(SecretNotFoundError, match=r"version 1 .*retained: 4, 3"):
        chain.diff("billing", "alice", 1)
    with pytest.raises(SecretNotFoundError, match=r"retains no version before 1"):
        chain.save("billing", "bob", "only") and chain.diff("billing", "bob")


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        ("a\nb\nc\n", "a\nB\nc\n", (2,)),
        ("a\nb\n", "a\nb\nc\n", (3,)),
        ("a\nb\nc\n", "a\nc\n", (2,)),
        ("a\nb\nc\n", "a\nb\n", (3,)),
        ("a", "a\n", (1,)),
        ("x\ny\n", "1\nx\ny\n", (1,)),
    ],
)
def test_changed_line_numbers(old: str, new: str, lines: tuple[int, ...]) -> None:
    assert changed_lines(old, new) == lines


# -- a delete you can take back -------------------------------------------------------------------


def test_delete_list_undelete_purge(chain: CloudChain, dynamodb: Any) -> None:
    chain.save("billing", "alice", "a", tags={"env": "prod"})
    chain.save("billing", "alice", "b")
    chain.save("billing", "bob", "x")
    deleted = chain.delete("billing", "alice", comment="gone")
    assert abs(deleted.expires_at - (time.time() + 30 * 86400)) < 60
    item = _item(dynamodb)
    assert "Secret" not in item and item["Action"] == {"S": "delete"}
    assert item["ExpiresAt"] == {"N": str(deleted.expires_at)}
    assert [e.user for e in chain.list("billing")] == ["bob"]
    (entry,) = chain.list(deleted=True)
    assert (entry.user, entry.deleted_by, entry.expires_at) == (
        "alice",
        MOTO_ARN,
        deleted.expires_at,
    )
    assert entry.tags == {"env": "prod"}
    assert chain.export("billing") == {"bob": "x"}
    for call in (
        lambda: chain.read("billing", "alice"),
        lambda: chain.read("billing", "alice", version=1),
        lambda: chain.delete("billing", "alice"),
        lambda: chain.rollback("billing", "alice", 1),
        lambda: chain.undelete("billing", "bob"),
    ):
        revision = _item(dynamodb)["Revision"]
        with pytest.raises(SecretNotFoundError):
            call()
        assert _item(dynamodb)["Revision"] == revision  # nothing was written
    assert chain.undelete("billing", "alice") == 4
    assert (chain.read("billing", "alice"), "ExpiresAt" in _item(dynamodb)) == ("b", False)
    with pytest.raises(ValidationError, match=r"not deleted.*--force"):
        chain.purge("billing", "alice")
    chain.purge("billing", "alice", force=True)
    assert "Item" not in dynamodb.get_item(TableName="safedb", Key=KEY)


def test_a_save_onto_a_deleted_secret_makes_it_live_with_its_history(chain: CloudChain) -> None:
    chain.save("billing", "alice", "one")
    chain.delete("billing", "alice")
    assert chain.save("billing", "alice", "two") == 3
    assert [chain.read("billing", "alice", version=n) for n in (1, 3)] == ["one", "two"]
    with pytest.raises(SecretNotFoundError, match="record of a delete"):
        chain.read("billing", "alice", version=2)


def test_past_its_recovery_window_a_deleted_secret_is_gone(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "one", tags={"env": "prod"})
    chain.delete("billing", "alice")
    item = _item(dynamodb)
    item["ExpiresAt"] = {"N": str(int(time.time()) - 1)}  # as if 30 days had passed
    dynamodb.put_item(TableName="safedb", Item=item)
    for call in (
        lambda: chain.history("billing", "alice"),
        lambda: chain.undelete("billing", "alice"),
        lambda: chain.tags("billing", "alice"),
    ):
        with pytest.raises(SecretNotFoundError):
            call()
    assert list(chain.list(deleted=True)) == list(chain.list()) == []
    assert chain.save("billing", "alice", "new") == 1  # a new secret, nothing of the old one
    assert [v.version for v in chain.history("billing", "alice")] == [1]
    assert chain.tags("billing", "alice") == {}


def test_purge_destroys_an_expired_secret_before_the_ttl_does(
    chain: CloudChain, dynamodb: Any
) -> None:
    chain.save("billing", "alice", "one")
    chain.delete("billing", "alice")
    item = _item(dynamodb)
    item["ExpiresAt"] = {"N": str(int(time.time()) - 1)}
    dynamodb.put_item(TableName="safedb", Item=item)
    chain.purge("billing", "alice")
    assert "Item" not in dynamodb.get_item(TableName="safedb", Key=KEY)


def test_recovery_days_from_settings(chain: CloudChain, monkeypatch: pytest.MonkeyPatch) -> None:
    chain.save("billing", "alice", "x")
    monkeypatch.setenv("CLOUDCHAIN_RECOVERY_DAYS", "7")
    deleted = CloudChain.from_config().delete("billing", "alice")
    assert abs(deleted.expires_at - (time.time() + 7 * 86400)) < 60


def test_setup_turns_ttl_on_once(chain: CloudChain, dynamodb: Any) -> None:
    described = dynamodb.describe_time_to_live(TableName="safedb")["TimeToLiveDescription"]
    assert (described["TimeToLiveStatus"], described["AttributeName"]) == ("ENABLED", "ExpiresAt")
    again = chain.setup()
    assert (again.table_created, again.ttl_enabled) == (False, False)
