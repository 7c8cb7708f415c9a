"""JSON request bodies, refused at the door when PostgreSQL could not store them.

PostgreSQL's text and JSON types cannot hold NUL (U+0000), and no UTF-8 encoding exists
for a lone surrogate ("\\ud800" is valid JSON, but not encodable text): either would get
through validation and fail as a 500 at the INSERT. Deeply nested JSON costs recursion in
every layer that walks it (the parser itself raises RecursionError past ~1,000 levels).
Every JSON body is checked here once, and a bad one is a 400 naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Deeper than any body this API takes (a batch item's amendments list is at depth 4).
MAX_JSON_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable_reason(text: str) -> str | None:
    """Why PostgreSQL could not store this string, or None."""
    if "\x00" in text:
        return "NUL characters are not allowed."
    if _SURROGATE.search(text):
        return "Unpaired surrogate characters are not allowed."
    return None


def unstorable_find(value: Any) -> tuple[str, str] | None:
    """The first (path, reason) in a parsed JSON value that cannot be stored, depth
    included; None if all is well. Walks iteratively: the value may be deep."""
    stack: list[tuple[str, Any, int]] = [("", value, 1)]
    while stack:
        path, item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return path or "non_field_errors", f"JSON nested deeper than {MAX_JSON_DEPTH} levels."
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason:
                return path or "non_field_errors", reason
        elif isinstance(item, dict):
            for key, sub in item.items():
                sub_path = f"{path}.{key}" if path else str(key)
                reason = unstorable_reason(key)
                if reason:
                    return sub_path, f"Field name: {reason}"
                stack.append((sub_path, sub, depth + 1))
        elif isinstance(item, list):
            for index, sub in enumerate(item):
                stack.append((f"{path}.{index}" if path else str(index), sub, depth + 1))
    return None


class StorableJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.") from None
        problem = unstorable_find(data)
        if problem is not None:
            path, reason = problem
            raise serializers.ValidationError({path: [reason]})
        return data


