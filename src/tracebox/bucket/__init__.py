"""Object-store access: bucket URLs, one ``Store`` interface, conditional writes, probing.

This layer knows nothing about projects, agents or traces.
"""

from .store import Blob, ObjectMeta, Store, check_key, open_bucket
from .url import BucketSpec, parse_bucket_url

__all__ = [
    "Blob",
    "BucketSpec",
    "ObjectMeta",
    "Store",
    "check_key",
    "open_bucket",
    "parse_bucket_url",
]
