"""The properties format: a Java .properties file of usernames to secrets, written with
javaproperties in ISO-8859-1 with `\\uXXXX` escapes, as `java.util.Properties.load` reads it
(and Spring, Gradle, Kafka...): every character of a text value, and of a key, is carried; a
binary secret is not (a properties value is text) unless exported as base64."""

from __future__ import annotations

from collections.abc import Mapping

from .libraries import writer


def render_properties(entries: Mapping[str, str]) -> tuple[str, list[str]]:
    """The properties export of entries (key -> text), in order; and the keys javaproperties
    would not read back exactly (none known: the check is the writer's own)."""
    javaproperties = writer("javaproperties", "properties")
    text: str = javaproperties.dumps(entries, timestamp=False, ensure_ascii=True)
    back = javaproperties.loads(text)
    return text, [key for key in entries if back.get(key) != entries[key]]
