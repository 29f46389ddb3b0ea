"""Resource names ("devices/abc") in and out of requests."""

from __future__ import annotations

import re

from muster.runtime.errors import InvalidArgument


def parse_name(name: str, collection: str, pattern: re.Pattern[str], *, field: str = "name") -> str:
    """The id in `<collection>/<id>`, or INVALID_ARGUMENT naming the field and the expected form."""
    prefix = f"{collection}/"
    if not name:
        raise InvalidArgument.field(field, f"is required, in the form {prefix}{{id}}")
    if not name.startswith(prefix):
        raise InvalidArgument.field(field, f"{name!r} is not of the form {prefix}{{id}}")
    resource_id = name[len(prefix):]
    if not pattern.match(resource_id):
        raise InvalidArgument.field(field, f"{resource_id!r} is not a valid {collection[:-1]} id")
    return resource_id
