"""Image partitions are S3 prefixes ("catalog/women/dress/"), added by the sensor as they appear.

A prefix becomes a partition only if it is safe as one: Dagster shows partition keys in its UI and refuses some
substrings ("...", control characters), and the frames IO manager turns them into folder names. S3 itself
allows any key, so the check lives here and `partition_key_problem` says why a prefix is refused.
"""

import re

from dagster import DynamicPartitionsDefinition

image_prefixes = DynamicPartitionsDefinition(name="image_prefixes")

MAX_KEY_BYTES = 1024  # S3's limit on an object key
MAX_SEGMENT_BYTES = 255  # a file name on Linux filesystems
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def partition_key_problem(key: str) -> str | None:
    """Why `key` cannot be a partition (None when it can): control characters, '...', a '.', '..' or empty
    path segment (a path walking out of or aliasing its folder), or a segment too long for a file name."""
    if CONTROL.search(key):
        return "it contains control characters"
    if "..." in key:
        return "it contains '...' (Dagster's range separator)"
    segments = key.removesuffix("/").split("/")
    if any(s in ("", ".", "..") for s in segments):
        return "it has an empty, '.' or '..' path segment"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES or any(len(s.encode("utf-8")) > MAX_SEGMENT_BYTES for s in segments):
        return f"it is longer than {MAX_KEY_BYTES} bytes or has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None
