"""The project's promises about itself: public API, README, CI."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _install_lines(page: str) -> list[str]:
    """The `pip install` lines of a page's Install section."""
    section = page.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    return [
        line.split("#", 1)[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith("pip install")
    ]


@pytest.mark.parametrize("page", ["README.md", "docs/setup.md"])
def test_the_install_lines_install_this_checkout_not_the_unrelated_pypi_package(
    page: str,
) -> None:
    lines = _install_lines((REPO / page).read_text())
    assert lines
    extras = set(re.findall(r'^\s+"(\w+)": \w+,$', (REPO / "setup.py").read_text(), re.M))
    for line in lines:
        [target] = shlex.split(line)[2:]
        # The checkout itself: a bare `cloudchain` is resolved on PyPI, another project.
        found = re.fullmatch(r"\.(?:\[([a-z,]+)\])?", target)
        assert found, line
        assert set((found[1] or "").split(",")) - {""} <= extras, line


def test_the_checkout_the_install_lines_name_is_this_version(tmp_path: Path) -> None:
    """What `pip install .` builds: setup.py's name and version, read from a copy of it."""
    for name in ("setup.py", "pyproject.toml", "README.md", "cloudchain/_version.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    proc = subprocess.run(
        [sys.executable, "setup.py", "--name", "--version"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert proc.stdout.split()[-2:] == ["cloudchain", cloudchain.__version__]


@pytest.mark.e2e
def test_the_readme_install_line_really_installs_this_version(tmp_path: Path) -> None:
    """`pip install .` run as the README says, from a copy of the checkout (its tracked
    files), into a folder of its own: what lands there is this project at this version."""
    (line,) = [line for line in _install_lines(README) if shlex.split(line)[2] == "."]
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, checkout / name)
    target = tmp_path / "installed"
    argv = [sys.executable, "-m", *shlex.split(line), "--no-deps", "--quiet",
            "--disable-pip-version-check", "--target", str(target)]  # fmt: skip
    subprocess.run(argv, cwd=checkout, check=True, capture_output=True, timeout=300)
    show = "import cloudchain, cloudchain.agent.proof; print(cloudchain.__version__, cloudchain.__file__)"
    proc = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(target)}, check=True)  # fmt: skip
    version, where = proc.stdout.split()
    assert version == cloudchain.__version__ and where.startswith(str(target))


def _make(target: str) -> str:
    """The commands `make TARGET` would run from a fresh clone (nothing is run)."""
    proc = subprocess.run(
        ["make", "--dry-run", "--always-make", "-C", str(REPO), target],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def test_make_demo_installs_only_the_local_extra_into_a_virtualenv_of_its_own() -> None:
    demo, test = _make("demo"), _make("test")
    demo_installs = [line for line in demo.splitlines() if "pip install" in line]
    assert demo_installs
    assert all(line.endswith(" '.[local]'") for line in demo_installs), demo_installs
    assert "-m venv .venv-demo" in demo
    for tool in ("[test]", "pytest", "ruff", "mypy", "awscli", "mkdocs", "hypothesis"):
        assert tool not in demo, tool
    # make test keeps its own set-up, in its own virtualenv.
    assert "-m venv .venv\n" in test
    assert "'.[test]'" in test
    assert ".venv-demo" not in test


def test_python_3_10_or_newer_is_required_and_tested_at_both_ends() -> None:
    setup = (REPO / "setup.py").read_text()
    assert 'python_requires=">=3.10"' in setup
    assert "Python :: 3.9" not in setup
    assert "Programming Language :: Python :: 3.10" in setup
    envlist = re.search(r"^envlist = (.*)$", (REPO / "tox.ini").read_text(), re.M)
    assert envlist is not None
    assert envlist[1].split(", ") == ["py310", "py313", "lint"]
    assert "Python 3.10+" in README
