"""A redacted comparison of two versions: whether and where they differ, never what they hold.

Only --show-values (unified_diff) prints the values themselves.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .errors import SecretNotFoundError
from .results import VersionDiff

if TYPE_CHECKING:
    from .store import SecretStore


def _lines(text: str) -> list[str]:
    # With their endings, so that a changed line ending counts as a change.
    return text.splitlines(keepends=True)


def changed_lines(old: str, new: str) -> tuple[int, ...]:
    """Return the 1-based numbers of the lines of new that are new or changed against old; a
    removal is reported at the number of the line that now follows the removed ones."""
    numbers: set[int] = set()
    matcher = difflib.SequenceMatcher(a=_lines(old), b=_lines(new), autojunk=False)
    for tag, _, _, start, end in matcher.get_opcodes():
        if tag == "equal":
            continue
        numbers.update(range(start + 1, end + 1) if end > start else (start + 1,))
    return tuple(sorted(numbers))


def compare(
    from_version: int, old: bytes, to_version: int, new: bytes, binary: bool
) -> VersionDiff:
    """Compare two plaintexts: sizes, line counts and, for text, the changed line numbers."""
    old_text = "" if binary else old.decode("utf-8", "replace")
    new_text = "" if binary else new.decode("utf-8", "replace")
    return VersionDiff(
        from_version=from_version,
        to_version=to_version,
        changed=old != new,
        from_bytes=len(old),
        to_bytes=len(new),
        from_lines=len(_lines(old_text)),
        to_lines=len(_lines(new_text)),
        changed_lines=() if binary or old == new else changed_lines(old_text, new_text),
        binary=binary,
    )


def diff_versions(
    store: SecretStore,
    service: str,
    user: str,
    from_version: int | None,
    to_version: int | None,
) -> VersionDiff:
    """Compare two versions of service/user in store (see CloudChain.diff for the defaults)."""
    item = store.load_secret(service, user)
    newer = store.version_of(item, to_version)
    if from_version is None:
        older = next((v for v in item.versions if v.version < newer.version
                      and not v.deleted), None)  # fmt: skip
        if older is None:
            raise SecretNotFoundError(
                f"{service}/{user} in table '{store.tablename}' retains no version before "
                f"{newer.version}"
            )
    else:
        older = store.version_of(item, from_version)
    old, old_binary = store.decrypt(service, user, older)
    new, new_binary = store.decrypt(service, user, newer)
    return compare(older.version, old, newer.version, new, old_binary or new_binary)


def summary(diff: VersionDiff) -> str:
    """One line: `v3 -> v4: changed, 41 -> 44 bytes, 2 -> 2 lines, lines changed: 2`."""
    head = f"v{diff.from_version} -> v{diff.to_version}: "
    if not diff.changed:
        size = f"{diff.to_bytes} bytes" + ("" if diff.binary else f", {diff.to_lines} lines")
        return head + "unchanged, " + size
    text = head + f"changed, {diff.from_bytes} -> {diff.to_bytes} bytes"
    if diff.binary:
        return text + " (binary: compared by bytes only)"
    numbers = ", ".join(str(n) for n in diff.changed_lines)
    return text + f", {diff.from_lines} -> {diff.to_lines} lines, lines changed: {numbers}"


def unified_diff(old: str, new: str, from_label: str, to_label: str) -> str:
    """The values themselves, as a unified diff."""
    lines = difflib.unified_diff(_lines(old), _lines(new), fromfile=from_label, tofile=to_label)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)  # fmt: skip
