"""The docs: they build with MkDocs in strict mode, and every link the README gives exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_docs_build_strictly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-q",
         "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "cli" / "index.html").exists()


def test_every_page_is_in_the_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    for page in (REPO / "docs").glob("*.md"):
        assert f": {page.name}" in nav, page.name


def test_every_link_in_the_readme_exists() -> None:
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10
    for link in links:
        assert (REPO / link).exists(), link


def test_the_readme_is_an_introduction() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme) < 10_000
    titles = re.findall(r"^## (.+)$", readme, re.M)
    # The agent and Speed: issue 11 asks for the curl example and the benchmark rows here.
    assert titles == ["What cloudchain is", "Install", "Quickstart", "The local emulator",
                      "The agent", "Speed", "Security model, in short",
                      "Reference"]  # fmt: skip


def test_every_agent_flag_is_documented() -> None:
    from cloudchain.agent.main import build_parser
    from cloudchain.commands.spec import CONFIGURATION

    shared = {flag for option in CONFIGURATION.options for flag in option.flags}
    page = (REPO / "docs" / "agent.md").read_text()
    flags = [
        flag
        for action in build_parser()._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag not in shared and flag not in ("--help", "--version")
    ]
    assert "--max-connections" in flags
    for flag in flags:
        assert f"`{flag}" in page, flag
