"""The project's promises about itself: public API, README, CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cloudchain

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
CLI_PAGE = (REPO / "docs" / "cli.md").read_text()


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name in dir(cloudchain)
        if not name.startswith("_")
        and not isinstance(getattr(cloudchain, name), type(cloudchain))
        and name not in ("annotations", "TYPE_CHECKING", "Any")
    }
    public |= {"__version__"}
    assert cloudchain.__all__ == sorted(cloudchain.__all__)
    assert set(cloudchain.__all__) == public
    for name in cloudchain.__all__:
        getattr(cloudchain, name)  # every lazy name resolves


def test_readme_opens_with_exactly_the_two_commands() -> None:
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", README, re.S)
    assert first_block is not None
    assert README.index("```") < README.index("\n## ")
    commands = [
        line for line in first_block.group(1).splitlines() if line and not line.startswith("#")
    ]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "\nmake test\n" in ci


def test_every_exit_code_is_documented() -> None:
    from cloudchain.commands import spec

    codes = {name: code for name, code in vars(spec).items() if name.startswith("EXIT_")}
    assert len(codes) >= 9
    for name, code in codes.items():
        assert re.search(rf"^\| {code}\b[^|]*\|", CLI_PAGE, re.M), name


def test_help_and_version_import_no_boto3() -> None:
    code = (
        "import sys\n"
        "from cloudchain.cli import main\n"
        "for argv in (['--help'], ['--version']):\n"
        "    main(argv)\n"
        "assert not any(m.split('.')[0] in ('boto3', 'botocore') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith(('boto3', 'botocore')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_package_ships_py_typed() -> None:
    assert (Path(cloudchain.__file__).parent / "py.typed").exists()


def test_a_direct_read_imports_nothing_it_does_not_use(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from moto import mock_aws\n"
        "import boto3\n"
        "with mock_aws():\n"
        "    boto3.client('dynamodb', region_name='us-east-1').create_table(\n"
        "        TableName='safedb', BillingMode='PAY_PER_REQUEST',\n"
        "        AttributeDefinitions=[{'AttributeName': n, 'AttributeType': 'S'}\n"
        "                              for n in ('Service', 'Username')],\n"
        "        KeySchema=[{'AttributeName': 'Service', 'KeyType': 'HASH'},\n"
        "                   {'AttributeName': 'Username', 'KeyType': 'RANGE'}])\n"
        "    before = set(sys.modules)\n"
        "    from cloudchain import CloudChain\n"
        "    try:\n"
        "        CloudChain().read('billing', 'nobody')\n"
        "    except LookupError:\n"
        "        pass\n"
        "    loaded = set(sys.modules) - before\n"
        "assert 'cloudchain.store' in loaded, sorted(loaded)  # the read really ran\n"
        "unwanted = {'cloudchain.writer', 'cloudchain.service_ops', 'cloudchain.identity',\n"
        "            'cloudchain.diff', 'difflib', 'cloudchain.render', 'jinja2'}\n"
        "assert not loaded & unwanted, sorted(loaded & unwanted)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr


def test_the_cchain_process_runs_without_the_cyclic_collector(tmp_path: Path) -> None:
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('collector', gc.isenabled()))\n"
        "sys.argv = ['cchain', '--version']\n"
        "from cloudchain.cli import run\n"
        "run()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.stdout.splitlines()[-1] == "collector False", proc.stdout + proc.stderr
