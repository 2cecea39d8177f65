"""Shared fixtures: a clean environment for every test, and moto's in-process AWS."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import KEY_ALIAS, CallCounter
from moto import mock_aws

import cloudchain
from cloudchain import CloudChain
from cloudchain.module_api import MODULE_VARIABLES


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Put cloudchain's logger back as it was after each test: cli.main() attaches a handler on
    the sys.stderr of its moment (pytest's capture, closed after that test) and may leave the
    level at DEBUG, and the next test in the same worker would log through both."""
    logger = logging.getLogger("cloudchain")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Give every test fake AWS credentials, an empty HOME and none of the caller's settings,
    and run it in its own directory: a `python -c` subprocess started from the checkout would
    import the source tree instead of the installed package under test."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CLOUDCHAIN_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    for name in MODULE_VARIABLES:
        monkeypatch.setattr(cloudchain, name, None)
    # The module API caches its default instance; start every test without one.
    monkeypatch.setattr(cloudchain.module_api, "_default", None)
    return home


@pytest.fixture
def aws() -> Iterator[None]:
    """Run the test against moto's in-process AWS."""
    with mock_aws():
        yield


@pytest.fixture
def chain(aws: None) -> CloudChain:
    """A CloudChain with its table and key created in moto."""
    chain = CloudChain(keyalias=KEY_ALIAS)
    chain.setup(create_key=True)
    return chain


@pytest.fixture
def dynamodb(aws: None) -> Any:
    """A raw DynamoDB client, for looking at and tampering with items."""
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def kms(aws: None) -> Any:
    """A raw KMS client."""
    return boto3.client("kms", region_name="us-east-1")


@pytest.fixture
def calls(chain: CloudChain) -> CallCounter:
    """Counts every AWS call the `chain` fixture makes from now on."""
    return CallCounter(chain._dynamodb, chain._kms)
