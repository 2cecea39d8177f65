"""What a region name may be: its shape, and that botocore's partition data lists it, so a
misspelt region is refused before any call instead of retried against a host that is not there.
botocore is loaded only once a region is actually named."""

from __future__ import annotations

import re
from functools import lru_cache

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


@lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """The regions botocore's partition data lists (every partition); empty if it has none."""
    from .clients import shared_loader  # botocore: only once a region is actually named

    try:
        partitions = shared_loader().load_data("partitions")["partitions"]
    except Exception:  # an old botocore without the file: the name's shape is all we check
        return frozenset()
    return frozenset(region for p in partitions for region in p.get("regions", {}))


class UnknownRegion(ValueError):
    """A well-formed region name that botocore does not list."""


def check_region(region: object) -> str:
    """Return an AWS region name after checking it: its shape (us-east-1, ap-southeast-2...),
    and that botocore knows it, so a misspelt name is refused instead of retried."""
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise ValueError(f"{region!r} is not an AWS region name")
    known = known_regions()
    if known and region not in known:
        raise UnknownRegion(f"{region!r} is not a region botocore knows")
    return region


def region_hint(err: ValueError) -> str:
    """What to do about a region name check_region refused."""
    if isinstance(err, UnknownRegion):
        return (
            "check its spelling (`aws ec2 describe-regions` lists them); a region newer than "
            "botocore needs `pip install -U botocore`"
        )
    return "a region name looks like us-east-1 or eu-west-2"
