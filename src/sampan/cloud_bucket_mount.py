"""`modal.CloudBucketMount`: an S3, R2 or GCS bucket in `volumes=`, with Modal's checks. The server mounts
it with s3fs (server/buckets.py) and binds the mount into the function's containers at its path.

Credentials come from the `secret`, as on Modal: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (S3, R2 and
other S3-compatible stores), or `GOOGLE_ACCESS_KEY_ID`/`GOOGLE_ACCESS_KEY_SECRET` (GCS HMAC keys); none
means a public bucket. `oidc_auth_role_arn` has no meaning on a self-hosted server."""

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

    def to_json(self, secret_ref: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest's form; `secret_ref` is the secret as the manifest writes secrets (sdk/refs.py)."""
        return {"bucket": self.bucket_name, "endpoint": self.bucket_endpoint_url, "prefix": self.key_prefix,
                "read_only": self.read_only, "requester_pays": self.requester_pays,
                "force_path_style": self.force_path_style, "secret": secret_ref}


__all__ = ["CloudBucketMount"]
