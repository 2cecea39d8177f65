"""botocore clients for one configuration and region: built once, lazily, and shared safely by
threads."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .config import DEFAULT_REGION, Config, kms_endpoint_for
from .errors import RegionNameError, is_loopback
from .region_names import check_region, region_hint

if TYPE_CHECKING:
    import boto3


class Clients:
    """Builds each AWS client on first use and then reuses it.

    botocore clients are thread-safe; building them from a shared session is not, hence the lock.
    No boto3 resources: they are slow to build and unsafe to share between threads.
    """

    def __init__(
        self,
        config: Config,
        session: boto3.Session | None,
        replica: str | None = None,
        *,
        botocore_session: Any = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self._config = config
        self._session = session
        # A replica region: its clients talk to it, and to the configured endpoint only when
        # that is an emulator on this machine (which serves every region).
        self._replica = replica
        # Built once when no boto3.Session was injected; a replica shares the home one's.
        self._botocore: Any = botocore_session
        self._clients: dict[tuple[str, bool], Any] = {}
        # Shared with the replicas, which share the botocore session it guards.
        self._lock = lock or threading.Lock()

    def get(self, service_name: str, *, quick: bool = False) -> Any:
        """Return the client for an AWS service, building it the first time.

        quick: for a question whose answer is optional (who is calling), short timeouts and
        two attempts, so that an unreachable service costs seconds, not minutes.
        """
        with self._lock:
            client = self._clients.get((service_name, quick))
            if client is None:
                client = self._build(service_name, quick)
                self._clients[(service_name, quick)] = client
            return client

    def replica(self, region: str) -> Clients:
        """Clients for a replica region, built as lazily, sharing this botocore session."""
        with self._lock:
            session = self._botocore_session() if self._session is None else None
        return Clients(
            self._config, self._session, region, botocore_session=session, lock=self._lock
        )

    def endpoint_for(self, service_name: str, region: str) -> str | None:
        """Return the configured endpoint of an AWS service in region; None means AWS's."""
        c = self._config
        dynamodb: str | None
        if c.region_endpoints.get(region):
            dynamodb = c.region_endpoints[region]
        elif self._replica is None or is_loopback(c.endpoint_url):
            dynamodb = c.endpoint_url
        else:
            dynamodb = None  # AWS's regional endpoint
        if service_name == "dynamodb":
            return dynamodb
        if service_name == "kms":
            home_kms = c.kms_endpoint_url if self._replica is None else None
            return kms_endpoint_for(dynamodb, c.kms_region_endpoints.get(region) or home_kms)
        # STS: only a local emulator's endpoint, which serves every service.
        return kms_endpoint_for(dynamodb, None)

    def credentials_method(self) -> str | None:
        """Where botocore found credentials ("env", "shared-credentials-file", "sso",
        "iam-role"...), or None when it found none."""
        with self._lock:
            session = self._session if self._session is not None else self._botocore_session()
            credentials = session.get_credentials()
        return None if credentials is None else str(credentials.method)

    @property
    def region(self) -> str:
        """The region the clients use: configured, else the AWS chain's, else us-east-1."""
        with self._lock:
            return self._region()

    def _region(self) -> str:
        # Called with the lock held (building a botocore session is not thread-safe).
        if self._replica is not None:
            return self._replica
        if self._config.region_name:
            return self._config.region_name
        if self._session is not None:
            chain_region = self._session.region_name
        else:
            chain_region = self._botocore_session().get_config_variable("region")
        if not chain_region:
            return DEFAULT_REGION
        try:  # the AWS chain's: AWS_DEFAULT_REGION (checked with the settings) or a profile's
            return check_region(chain_region)
        except ValueError as err:
            raise RegionNameError(
                f"invalid region from the AWS profile in use (~/.aws/config): {err}",
                hint=region_hint(err),
            ) from None

    def _build(self, service_name: str, quick: bool = False) -> Any:
        from botocore.config import Config as BotoConfig

        c = self._config
        boto_config = BotoConfig(
            connect_timeout=min(c.connect_timeout, 2.0) if quick else c.connect_timeout,
            read_timeout=min(c.read_timeout, 3.0) if quick else c.read_timeout,
            # total_max_attempts counts the first try, as AWS_MAX_ATTEMPTS does; botocore's
            # "max_attempts" would count retries only, one call more than configured.
            retries={
                "mode": c.retry_mode,
                "total_max_attempts": min(c.max_attempts, 2) if quick else c.max_attempts,
            },
            # One pooled connection per worker thread, so parallel calls never queue for one.
            max_pool_connections=max(10, c.max_workers),
        )
        if self._session is not None:  # an injected boto3.Session
            make = self._session.client
        else:
            make = self._botocore_session().create_client
        region = self._region()
        return make(
            service_name,
            region_name=region,
            endpoint_url=self.endpoint_for(service_name, region),
            config=boto_config,
        )

    def _botocore_session(self) -> Any:
        # botocore alone: importing boto3 costs a short-lived `cchain` a third of its start-up
        # (it imports s3transfer), and nothing here needs it.
        if self._botocore is None:
            import botocore.session

            session = botocore.session.Session(profile=self._config.profile_name)
            session.register_component("data_loader", shared_loader())
            self._botocore = session
        return self._botocore


_loader: Any = None
_loader_lock = threading.Lock()


def shared_loader() -> Any:
    """Return one botocore model loader for the process, so each new CloudChain skips the JSON."""
    global _loader
    with _loader_lock:
        if _loader is None:
            from botocore.loaders import create_loader

            _loader = create_loader()
        return _loader
