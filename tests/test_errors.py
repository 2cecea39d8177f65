"""The error hierarchy and the one translation of botocore errors."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

import cloudchain
from cloudchain import CloudChain
from cloudchain.errors import ERROR_CODES, CloudChainError, aws_errors, translate


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")


def test_every_error_is_a_cloudchain_error_and_importable_from_the_package() -> None:
    for name in (
        "CloudChainConfigError",
        "SecretNotFoundError",
        "AccessDeniedError",
        "IntegrityError",
        "EndpointError",
        "ValidationError",
        "VersionConflictError",
    ):
        assert issubclass(getattr(cloudchain, name), cloudchain.CloudChainError)


# Codes whose message says more than their reason: where the table was looked for, and which
# operation was denied (tested below).
EXPLAINED = ("ResourceNotFoundException", "AccessDeniedException", "AccessDenied")


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_mapped_code_becomes_its_error_with_context(code: str) -> None:
    expected_class, reason = ERROR_CODES[code]
    err = translate(_client_error(code), "cannot read billing/alice from table 'safedb'")
    assert type(err) is expected_class
    if code not in EXPLAINED:
        assert str(err) == f"cannot read billing/alice from table 'safedb': {reason} ({code})"


def test_a_missing_table_names_where_it_was_looked_for() -> None:
    err = translate(_client_error("ResourceNotFoundException"), "doing", "http://h:1", "eu-west-3")
    assert str(err) == (
        "doing: the table does not exist in region eu-west-3 at http://h:1 "
        "(ResourceNotFoundException)"
    )
    assert err is not None and err.hint is not None and "--region" in err.hint


@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied"])
def test_access_denied_names_the_operation_and_points_to_the_policy(code: str) -> None:
    err = translate(_client_error(code), "doing")
    assert err is not None and "access denied for" in str(err) and f"({code})" in str(err)
    assert err.hint is not None and "--policy read" in err.hint


def test_unmapped_code_becomes_the_base_error_naming_the_code() -> None:
    err = translate(_client_error("SomethingNew"), "doing")
    assert type(err) is CloudChainError
    assert "SomethingNew" in str(err)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_unknown_code_with_a_5xx_is_a_failing_service(status: int) -> None:
    # What a read fails over on: a plain 5xx, whatever a proxy or the service calls it.
    error = ClientError(
        {"Error": {"Code": str(status), "Message": ""},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetItem",
    )  # fmt: skip
    err = translate(error, "doing")
    assert type(err) is cloudchain.EndpointError
    assert str(err) == f"doing: the service failed after all retries ({status})"


def test_an_unknown_code_with_a_4xx_is_not_an_endpoint_error() -> None:
    error = ClientError(
        {"Error": {"Code": "Odd", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "GetItem",
    )
    assert type(translate(error, "doing")) is CloudChainError


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_connection_failures_become_endpoint_errors_naming_the_endpoint(error: Exception) -> None:
    err = translate(error, "doing")
    assert isinstance(err, cloudchain.EndpointError)
    assert "http://127.0.0.1:1" in str(err)


@pytest.mark.parametrize("error", [NoCredentialsError(), ProfileNotFound(profile="ghost")])
def test_credential_problems_become_config_errors(error: Exception) -> None:
    assert isinstance(translate(error, "doing"), cloudchain.CloudChainConfigError)


def test_aws_errors_chains_the_original_and_leaves_other_exceptions_alone() -> None:
    with pytest.raises(cloudchain.IntegrityError) as info, aws_errors("doing"):
        raise _client_error("InvalidCiphertextException")
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(KeyError), aws_errors("doing"):
        raise KeyError("not botocore")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_raises_endpoint_error_naming_it() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    chain = CloudChain(endpoint_url=url, max_attempts=1)
    with pytest.raises(cloudchain.EndpointError, match=url):
        chain.read("billing", "alice")


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(cloudchain.CloudChainConfigError, match="ghost"):
        CloudChain(profile_name="ghost").read("billing", "alice")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.save("", "alice", "x"), "service must not be empty"),
        (lambda c: c.save("billing", "", "x"), "user must not be empty"),
        (lambda c: c.save("s" * 2049, "alice", "x"), "2049 bytes"),
        (lambda c: c.save("billing", "é" * 513, "x"), "1026 bytes"),
        (lambda c: c.save("billing", "alice", ""), "must not be empty"),
        (lambda c: c.save("billing", "alice", "x" * 393217), "393217 bytes; the limit is 393216"),
        (lambda c: c.save("billing", "alice", b"\0" * 393217), "the limit is 393216"),
        (lambda c: c.save("billing", "alice", 12345), "must be str or bytes, not int"),
        (lambda c: c.save("billing", "alice", b""), "must not be empty"),
        (lambda c: c.save("billing", "alice", "\ud800"), "not valid Unicode"),
        (lambda c: c.read("", "alice"), "service must not be empty"),
        (lambda c: c.delete("billing", ""), "user must not be empty"),
    ],
)
def test_bad_input_is_refused_before_any_aws_call(call: object, message: str) -> None:
    # An unreachable endpoint: any AWS call would raise EndpointError, not ValidationError.
    chain = CloudChain(endpoint_url=f"http://127.0.0.1:{_closed_port()}", keyalias="alias/k")
    with pytest.raises(cloudchain.ValidationError, match=message):
        call(chain)  # type: ignore[operator]


def test_secret_of_exactly_4096_bytes_is_accepted(aws: None) -> None:
    chain = CloudChain(keyalias="alias/k")
    chain.setup(create_key=True)
    chain.save("billing", "alice", "€" * 1365 + "x")  # 4095 + 1 bytes
    assert len(chain.read("billing", "alice").encode()) == 4096


def test_messages_never_contain_the_secret(aws: None) -> None:
    secret = "TOP-SECRET-VALUE-" + "x" * 393216
    chain = CloudChain(keyalias="alias/k")
    with pytest.raises(cloudchain.ValidationError) as info:
        chain.save("billing", "alice", secret)
    assert "TOP-SECRET" not in str(info.value)
    with pytest.raises(cloudchain.CloudChainConfigError) as info2:
        chain.save("billing", "alice", "TOP-SECRET-SHORT")  # no table, no key
    assert "TOP-SECRET" not in str(info2.value)
