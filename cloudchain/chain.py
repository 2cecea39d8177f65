"""The CloudChain class: configuration plus lazily built, thread-safe clients, composing crypto and table."""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import crypto, table
from .config import DEFAULT_REGION, DEFAULT_TABLE, Config, kms_endpoint_for, load_config
from .errors import CloudChainConfigError, IntegrityError, SecretNotFoundError, aws_errors
from .validation import check_row, secret_bytes

if TYPE_CHECKING:
    import boto3

_DEFAULTS = Config()


@dataclass(frozen=True)
class Entry:
    """One stored secret's name, without its value."""

    service: str
    user: str


@dataclass(frozen=True)
class SetupResult:
    """What `setup` had to create."""

    table_created: bool
    key_created: bool


class CloudChain:
    """A handle on one secrets table and its KMS key; safe to share between threads."""

    def __init__(
        self,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        tablename: str = DEFAULT_TABLE,
        keyalias: str | None = None,
        kms_endpoint_url: str | None = None,
        profile_name: str | None = None,
        connect_timeout: float = _DEFAULTS.connect_timeout,
        read_timeout: float = _DEFAULTS.read_timeout,
        max_attempts: int = _DEFAULTS.max_attempts,
        session: boto3.Session | None = None,
    ) -> None:
        self.config = Config(
            region_name=region_name or None,
            endpoint_url=endpoint_url or None,
            kms_endpoint_url=kms_endpoint_url or None,
            tablename=tablename or DEFAULT_TABLE,
            keyalias=keyalias or None,
            profile_name=profile_name or None,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )
        self._session = session
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        session: boto3.Session | None = None,
        **overrides: Any,
    ) -> CloudChain:
        """Build a CloudChain from the config file and environment; keyword overrides win."""
        return cls.from_settings(load_config(overrides, path=path), session=session)

    @classmethod
    def from_settings(cls, config: Config, *, session: boto3.Session | None = None) -> CloudChain:
        """Build a CloudChain from an already resolved Config."""
        return cls(**asdict(config), session=session)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"CloudChain(tablename={c.tablename!r}, region_name={c.region_name!r}, "
            f"endpoint_url={c.endpoint_url!r}, keyalias={c.keyalias!r})"
        )

    # -- clients -------------------------------------------------------------------------------

    def _client(self, service_name: str) -> Any:
        with self._lock:
            client = self._clients.get(service_name)
            if client is None:
                client = self._make_client(service_name)
                self._clients[service_name] = client
            return client

    def _make_client(self, service_name: str) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        if self._session is None:
            self._session = boto3.Session(profile_name=self.config.profile_name)
        c = self.config
        endpoint = (
            c.endpoint_url
            if service_name == "dynamodb"
            else kms_endpoint_for(c.endpoint_url, c.kms_endpoint_url)
        )
        boto_config = BotoConfig(
            connect_timeout=c.connect_timeout,
            read_timeout=c.read_timeout,
            retries={"mode": "standard", "max_attempts": c.max_attempts},
        )
        return self._session.client(
            service_name,  # type: ignore[call-overload]
            region_name=c.region_name or self._session.region_name or DEFAULT_REGION,
            endpoint_url=endpoint,
            config=boto_config,
        )

    @property
    def _dynamodb(self) -> Any:
        return self._client("dynamodb")

    @property
    def _kms(self) -> Any:
        return self._client("kms")

    def _errors(self, doing: str) -> Any:
        return aws_errors(doing, self.config.endpoint_url)

    def _require_key(self, service: str, user: str) -> str:
        if not self.config.keyalias:
            raise CloudChainConfigError(
                f"cannot save {service}/{user}: no KMS key alias is configured; set keyalias "
                "under [IAMKMS] in ~/.cchainrc, CLOUDCHAIN_KEY_ALIAS, --key-alias, "
                "or CloudChain(keyalias=...)"
            )
        return self.config.keyalias

    # -- operations ----------------------------------------------------------------------------

    def save(self, service: str, user: str, secret: str) -> None:
        """Encrypt secret with the row's encryption context and store it."""
        service, user = check_row(service, user)
        plaintext = secret_bytes(secret, service, user)
        key = self._require_key(service, user)
        name = self.config.tablename
        with self._errors(f"cannot save {service}/{user} in table '{name}' with key {key}"):
            context = crypto.row_context(service, user)
            ciphertext = crypto.encrypt(self._kms, key, plaintext, context)
            table.put_item(self._dynamodb, name, service, user, ciphertext)

    def read(self, service: str, user: str) -> str:
        """Return the secret of service/user."""
        service, user = check_row(service, user)
        name = self.config.tablename
        with self._errors(f"cannot read {service}/{user} from table '{name}'"):
            item = table.get_item(self._dynamodb, name, service, user)
            if item is None:
                raise SecretNotFoundError(f"no secret for {service}/{user} in table '{name}'")
            plaintext = crypto.decrypt(
                self._kms, item.ciphertext, crypto.row_context(service, user)
            )
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(
                f"the secret of {service}/{user} in table '{name}' is not UTF-8 text"
            ) from None

    def delete(self, service: str, user: str) -> None:
        """Delete the secret of service/user."""
        service, user = check_row(service, user)
        name = self.config.tablename
        with self._errors(f"cannot delete {service}/{user} from table '{name}'"):
            existed = table.delete_item(self._dynamodb, name, service, user)
        if not existed:
            raise SecretNotFoundError(f"no secret for {service}/{user} in table '{name}'")

    def list(self, service: str | None = None) -> Iterator[Entry]:
        """Yield every stored secret's name, or one service's, sorted; never reads values."""
        name = self.config.tablename
        where = f" of service {service}" if service else ""
        with self._errors(f"cannot list secrets{where} in table '{name}'"):
            keys: builtins.list[tuple[str, str]] = sorted(
                table.iter_keys(self._dynamodb, name, service)
            )
        return (Entry(service=s, user=u) for s, u in keys)

    def setup(self, create_key: bool = False) -> SetupResult:
        """Create the table if missing and, with create_key, the KMS key behind the alias."""
        name = self.config.tablename
        key_created = False
        if create_key:
            alias = self.config.keyalias
            if not alias:
                raise CloudChainConfigError(
                    "cannot create a key: no KMS key alias is configured (set keyalias or --key-alias)"
                )
            if not alias.startswith("alias/"):
                raise CloudChainConfigError(
                    f"cannot create key alias {alias}: it must start with alias/"
                )
            with self._errors(f"cannot create KMS key {alias}"):
                if not crypto.key_exists(self._kms, alias):
                    crypto.create_key_with_alias(self._kms, alias)
                    key_created = True
        with self._errors(f"cannot create table '{name}'"):
            table_created = table.create_table(self._dynamodb, name)
        return SetupResult(table_created=table_created, key_created=key_created)
