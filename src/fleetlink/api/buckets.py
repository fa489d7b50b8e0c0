"""The data stack's buckets the functions reach, declared once (a leaf: the registry, the deps, the
CDK app and the dev stack import these without importing one another)."""

from __future__ import annotations

from fleetlink.api.permissions import BucketAccess
from fleetlink.store.keys import OUTPUT_OBJECTS_PREFIX

#: Complete task output (gzip, one object per execution, attempt and stream).
OUTPUT_BUCKET = BucketAccess("output", "FLEETLINK_OUTPUT_BUCKET", OUTPUT_OBJECTS_PREFIX)
#: Signed agent artifacts (``releases/<version>/<artifact>``).
RELEASES_BUCKET = BucketAccess("releases", "FLEETLINK_RELEASES_BUCKET", "releases/")
