"""`modal.CloudBucketMount`: an S3, R2 or GCS bucket in `volumes=`. Accepted with Modal's checks; the
local backend cannot mount buckets yet (that needs a FUSE client in the container), and says so once
when an app declares one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CloudBucketMount:
    bucket_name: str
    bucket_endpoint_url: str | None = None
    key_prefix: str | None = None
    secret: Any = None
    oidc_auth_role_arn: str | None = None
    read_only: bool = False
    requester_pays: bool = False
    force_path_style: bool = False

    def __post_init__(self) -> None:
        if self.requester_pays and self.secret is None:
            raise ValueError("Credentials required in order to use Requester Pays.")
        if self.key_prefix is not None and not self.key_prefix.endswith("/"):
            raise ValueError("key_prefix will be prefixed to all object paths, so it must end in a '/'")


__all__ = ["CloudBucketMount"]
