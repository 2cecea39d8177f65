"""Generated secret values, with the options of Secrets Manager's GetRandomPassword: a length,
character classes to leave out, characters to exclude, an optional space, and at least one
character of every included class (by default).

Every character comes from the `secrets` module. No AWS, no printing: the caller decides where
the value goes (cchain: only into the save, and to stdout with --show).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from .errors import ValidationError
from .validation import MAX_SECRET_BYTES

DEFAULT_LENGTH = 32
# Secrets Manager's punctuation: every printable ASCII character that is not a letter or digit.
PUNCTUATION = string.punctuation
CHARSETS = {
    "hex": "0123456789abcdef",
    "base64url": string.ascii_letters + string.digits + "-_",
    "alnum": string.ascii_letters + string.digits,
}


@dataclass(frozen=True)
class PasswordSpec:
    """What a generated value is made of. With charset (hex, base64url or alnum), every
    character is drawn from that set alone and the class switches do not apply."""

    length: int = DEFAULT_LENGTH
    exclude_chars: str = ""
    numbers: bool = True
    punctuation: bool = True
    uppercase: bool = True
    lowercase: bool = True
    include_space: bool = False
    require_each_type: bool = True
    charset: str | None = None


def _classes(spec: PasswordSpec) -> list[str]:
    """The character classes a value may draw from, excluded characters taken out, empty
    classes dropped; each one is required when spec.require_each_type."""
    if spec.charset is not None:
        if spec.charset not in CHARSETS:
            raise ValidationError(
                f"--charset {spec.charset!r} is not one of {', '.join(sorted(CHARSETS))}"
            )
        wanted = [CHARSETS[spec.charset]]
    else:
        chosen = (
            (spec.uppercase, string.ascii_uppercase),
            (spec.lowercase, string.ascii_lowercase),
            (spec.numbers, string.digits),
            (spec.punctuation, PUNCTUATION),
        )
        wanted = [chars for included, chars in chosen if included]
    excluded = set(spec.exclude_chars)
    classes = ["".join(c for c in chars if c not in excluded) for chars in wanted]
    return [chars for chars in classes if chars]


def check_spec(spec: PasswordSpec) -> list[str]:
    """Refuse a spec no value can satisfy, in one line naming the flag; return its classes."""
    if isinstance(spec.length, bool) or not isinstance(spec.length, int) or spec.length < 1:
        raise ValidationError(f"--length must be a whole number of at least 1, not {spec.length}")
    if spec.length > MAX_SECRET_BYTES:
        raise ValidationError(
            f"--length {spec.length} is over the secret size limit ({MAX_SECRET_BYTES} bytes)"
        )
    if spec.charset is not None and not (
        spec.numbers and spec.punctuation and spec.uppercase and spec.lowercase
    ):
        raise ValidationError("--charset already says which characters; drop the --no-* flags")
    if spec.charset is not None and spec.include_space:
        raise ValidationError("--charset already says which characters; drop --include-space")
    classes = _classes(spec)
    space = spec.include_space and " " not in spec.exclude_chars
    if not classes and not space:
        raise ValidationError(
            "--generate has no character left to use: every class is excluded or turned off"
        )
    required = len(classes) if spec.require_each_type and spec.charset is None else 0
    if spec.length < required:
        raise ValidationError(
            f"--length {spec.length} is shorter than the {required} character classes "
            "--require-each-type asks for (or pass --no-require-each-type)"
        )
    return classes


def generate(spec: PasswordSpec) -> str:
    """Return a new random value as spec says; ValidationError if no value can satisfy it."""
    classes = check_spec(spec)
    pool = "".join(classes) + (" " if spec.include_space and " " not in spec.exclude_chars else "")
    chars = [secrets.choice(pool) for _ in range(spec.length)]
    if spec.require_each_type and spec.charset is None:
        # One character of each class at distinct random places; the rest stay uniform.
        places = list(range(spec.length))
        for chars_of_class in classes:
            place = places.pop(secrets.randbelow(len(places)))
            chars[place] = secrets.choice(chars_of_class)
    return "".join(chars)
