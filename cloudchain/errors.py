"""Exceptions raised by cloudchain, and the one place where botocore errors are translated.

    CloudChainError
    ├── CloudChainConfigError   configuration is missing or wrong (key alias, table, credentials)
    │   └── RegionNameError     a region name that is not one (also a ValidationError)
    ├── ValidationError         bad input, refused before any AWS call (also a ValueError)
    ├── SecretNotFoundError     no secret for that service and user (or that version)
    ├── AccessDeniedError       IAM or the credentials refused the call
    ├── IntegrityError          the ciphertext does not decrypt for its row: altered, copied or replayed
    ├── EndpointError           the endpoint cannot be reached, or the service stayed unavailable
    │   └── ThrottledError      AWS kept throttling after every retry
    ├── VersionConflictError    check-and-set found a different current version
    └── IncompleteImportError   an import stopped at a failure; says which entries landed

No message ever contains a secret value: messages name the service, user, table and key instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse


class CloudChainError(Exception):
    """Base class of every error cloudchain raises; hint, when set, says what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class CloudChainConfigError(CloudChainError):
    """Configuration is missing or wrong."""


class ValidationError(CloudChainError, ValueError):
    """Input was refused before any AWS call."""


class RegionNameError(CloudChainConfigError, ValidationError):
    """A configured region name is not an AWS region; refused before any AWS call."""


class SecretNotFoundError(CloudChainError, LookupError):
    """No secret exists for that service and user (or that version)."""


class AccessDeniedError(CloudChainError):
    """AWS refused the call: IAM policy, key policy or credentials."""


class IntegrityError(CloudChainError):
    """The stored ciphertext does not decrypt for its row."""


class EndpointError(CloudChainError):
    """The AWS endpoint cannot be reached or stayed unavailable after retries."""


class ThrottledError(EndpointError):
    """AWS kept throttling the call after every retry."""


class VersionConflictError(CloudChainError):
    """A check-and-set save found a different current version; nothing was written."""

    def __init__(self, message: str, *, current_version: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.current_version = current_version


class IncompleteImportError(CloudChainError):
    """An import stopped at a failed write; the entries not yet written were not started."""

    def __init__(
        self,
        message: str,
        *,
        written: tuple[str, ...],
        not_written: tuple[str, ...],
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.written = written
        self.not_written = not_written


# Every AWS error code we expect from DynamoDB, KMS and STS, with the error it becomes and why.
# Codes not listed become a plain CloudChainError that names the code.
ERROR_CODES: dict[str, tuple[type[CloudChainError], str]] = {
    # DynamoDB
    "ResourceNotFoundException": (
        CloudChainConfigError,
        "the table does not exist (create it with `cchain --setup`)",
    ),
    "ProvisionedThroughputExceededException": (ThrottledError, "throttled after all retries"),
    "RequestLimitExceeded": (ThrottledError, "throttled after all retries"),
    "InternalServerError": (EndpointError, "the service failed after all retries"),
    "ItemCollectionSizeLimitExceededException": (CloudChainError, "the item is too large"),
    # KMS
    "NotFoundException": (CloudChainConfigError, "the KMS key or alias does not exist"),
    "InvalidCiphertextException": (
        IntegrityError,
        "the ciphertext does not decrypt for this row and version "
        "(altered, or copied from another row or version)",
    ),
    "IncorrectKeyException": (IntegrityError, "the ciphertext was made with a different key"),
    "DisabledException": (CloudChainConfigError, "the KMS key is disabled"),
    "KMSInvalidStateException": (CloudChainConfigError, "the KMS key is not in a usable state"),
    "InvalidKeyUsageException": (CloudChainConfigError, "the KMS key cannot encrypt and decrypt"),
    "KeyUnavailableException": (EndpointError, "the KMS key is unavailable"),
    "KMSInternalException": (EndpointError, "KMS failed after all retries"),
    "DependencyTimeoutException": (EndpointError, "KMS timed out after all retries"),
    # Either service, and STS
    "AccessDeniedException": (AccessDeniedError, "access denied"),
    "AccessDenied": (AccessDeniedError, "access denied"),
    "UnrecognizedClientException": (AccessDeniedError, "the AWS credentials were not recognised"),
    "InvalidClientTokenId": (AccessDeniedError, "the AWS credentials were not recognised"),
    "InvalidSignatureException": (AccessDeniedError, "the request signature was refused"),
    "SignatureDoesNotMatch": (AccessDeniedError, "the request signature was refused"),
    "ExpiredTokenException": (AccessDeniedError, "the AWS credentials have expired"),
    "ExpiredToken": (AccessDeniedError, "the AWS credentials have expired"),
    "ThrottlingException": (ThrottledError, "throttled after all retries"),
    "Throttling": (ThrottledError, "throttled after all retries"),
    "ServiceUnavailable": (EndpointError, "the service is unavailable"),
    "ServiceUnavailableException": (EndpointError, "the service is unavailable"),
    "InternalFailure": (EndpointError, "the service failed after all retries"),
    "ValidationException": (CloudChainError, "AWS rejected the request as invalid"),
}

# botocore exception class names that mean "could not talk to the endpoint at all".
_CONNECTION_ERRORS = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "SSLError",
    "HTTPClientError",
)
_CREDENTIAL_ERRORS = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "CredentialRetrievalError",
    "ProfileNotFound",
    "NoRegionError",
    "SSOTokenLoadError",
    "TokenRetrievalError",
    "UnauthorizedSSOTokenError",
)


def aws_error_code(err: BaseException) -> str | None:
    """Return the AWS error code of a botocore ClientError, or None for anything else."""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return str(response["Error"].get("Code", "Unknown"))
    return None


def _http_status(err: BaseException) -> int:
    response = getattr(err, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0


def is_loopback(url: str | None) -> bool:
    """Whether an endpoint URL is on this machine (a local emulator)."""
    host = (urlparse(url).hostname or "") if url else ""
    return host in ("localhost", "::1") or host.startswith("127.")


def credentials_hint(endpoint: str | None) -> str:
    """What to do when no usable AWS credentials were found."""
    hint = "set AWS_PROFILE or run `aws configure`, or pass --profile"
    if is_loopback(endpoint):
        hint += (
            "; the local emulator accepts any credentials: "
            "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
        )
    return hint


POLICY_HINT = (
    "`cchain -e SERVICE --policy read` (or write) prints the IAM policy a role needs; "
    "`cchain --doctor` checks each permission"
)


def translate(
    err: BaseException, doing: str, endpoint: str | None = None, region: str | None = None
) -> CloudChainError | None:
    """Return the CloudChainError for a botocore error, or None when it is not one of ours.

    The message says what failed and where; the hint, what to do about it.
    """
    code = aws_error_code(err)
    where = endpoint or "its AWS endpoint"
    if code == "ResourceNotFoundException":
        return CloudChainConfigError(
            f"{doing}: the table does not exist in region {region or '?'} at {where} ({code})",
            hint="check --region and --endpoint-url, or run `cchain --doctor`, before "
            "`cchain --setup` creates a new table there",
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        operation = getattr(err, "operation_name", None) or "the call"
        said = str(getattr(err, "response", {}).get("Error", {}).get("Message", "")).strip()
        # AWS's message names the principal, the action and the resource, never a payload.
        return AccessDeniedError(
            f"{doing}: access denied for {operation}"
            + (f": {said}" if said else "")
            + f" ({code})",
            hint=POLICY_HINT,
        )
    if code is not None:
        cls, reason = ERROR_CODES.get(code, (CloudChainError, "AWS refused the request"))
        if code not in ERROR_CODES and _http_status(err) >= 500:
            # A code we do not know, with a 5xx after every retry: the service is failing.
            cls, reason = EndpointError, "the service failed after all retries"
        hint = credentials_hint(endpoint) if cls is AccessDeniedError else None
        return cls(f"{doing}: {reason} ({code})", hint=hint)
    mro_names = {klass.__name__ for klass in type(err).__mro__}
    if mro_names.intersection(_CONNECTION_ERRORS):
        kwargs = getattr(err, "kwargs", {}) or {}
        where = kwargs.get("endpoint_url") or endpoint or "the AWS default endpoint"
        return EndpointError(
            f"{doing}: cannot reach {where} ({type(err).__name__})",
            hint="check the endpoint, the region and the network; `cchain --doctor` tests them",
        )
    if mro_names.intersection(_CREDENTIAL_ERRORS):
        # botocore's own text here names profiles and settings, never a secret.
        return CloudChainConfigError(f"{doing}: {err}", hint=credentials_hint(endpoint))
    return None


@contextmanager
def aws_errors(
    doing: str, endpoint: str | None = None, region: str | None = None
) -> Iterator[None]:
    """Translate botocore errors raised inside the block, chaining the original."""
    try:
        yield
    except CloudChainError:
        raise
    except Exception as err:
        translated = translate(err, doing, endpoint, region)
        if translated is None:
            raise
        raise translated from err
