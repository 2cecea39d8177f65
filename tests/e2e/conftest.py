"""End-to-end fixtures: a real moto server subprocess on loopback, reset for every test."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import KEY_ALIAS
from support import (
    BIN,
    Emulator,
    exported_settings,
    free_port,
    wait_for_port,
    wait_for_text,
)

from cloudchain import crypto, table


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
    # The same calls `cchain --setup --create-key` makes, on clients shared across tests.
    kms, dynamodb = emulator.client("kms"), emulator.client("dynamodb")
    assert not crypto.key_exists(kms, KEY_ALIAS)
    crypto.create_key_with_alias(kms, KEY_ALIAS)
    table.create_table(dynamodb, "safedb")
    table.enable_ttl(dynamodb, "safedb")
    return emulator


@pytest.fixture
def local_emulator(emulator: Emulator, tmp_path: Path) -> Iterator[Emulator]:
    """cchain-local on a free port: moto with conditional writes made atomic, as on AWS."""
    out = tmp_path / "cchain-local.out"
    env = {k: v for k, v in emulator.env.items() if not k.startswith("CLOUDCHAIN_")}
    with out.open("wb") as stdout:
        proc = subprocess.Popen(
            [str(BIN / "cchain-local"), "--port", "0", "--key-alias", KEY_ALIAS],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            settings = exported_settings(wait_for_text(out, "export AWS_ACCESS_KEY_ID", proc))
            yield Emulator(settings["CLOUDCHAIN_ENDPOINT_URL"], {**env, **settings}, proc)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
