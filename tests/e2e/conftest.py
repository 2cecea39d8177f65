"""End-to-end fixtures: a real moto server subprocess on loopback, reset for every test."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from helpers import KEY_ALIAS
from support import Emulator, free_port, wait_for_port

from cloudchain import CloudChain


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def emulator(moto_server: str, clean_env: Path) -> Emulator:
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "CLOUDCHAIN_"))
    }
    env.update(
        HOME=str(clean_env),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(clean_env / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(clean_env / "aws-credentials"),
        CLOUDCHAIN_ENDPOINT_URL=moto_server,
        CLOUDCHAIN_KEY_ALIAS=KEY_ALIAS,
    )
    emulator = Emulator(moto_server, env)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    CloudChain(endpoint_url=moto_server, keyalias=KEY_ALIAS, session=session).setup(create_key=True)
    return emulator
