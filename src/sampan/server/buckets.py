"""`CloudBucketMount` buckets, mounted by the server with s3fs (Debian package `s3fs`) and bound into a
function's containers like a Volume.

One FUSE mount per (workspace, bucket, prefix, endpoint, credentials, read-only), under
`$SAMPAN_HOME/buckets/<key>`, shared by every container that names it and unmounted when the server
stops. Files appear owned by the containers' root (the sandbox's uid), so containers read (and, unless
`read_only=True`, write) them as Modal's do.

The endpoint is a tenant's choice and s3fs runs on the server's machine, so an endpoint on this
machine's loopback, a private or link-local network is refused unless the operator allows it
(SAMPAN_BUCKET_ENDPOINTS_ALLOW=host:port,...): a bucket is not a way to reach the platform's own ports.
`endpoint_problem` is that rule, pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..exception import InvalidError

MOUNT_WAIT_S = 15.0
GCS_ENDPOINT = "https://storage.googleapis.com"


def endpoint_problem(url: str, addresses: list[str], allowed: set[str]) -> str | None:
    """Why a bucket endpoint may not be used (None: it may). `addresses`: what its host resolves to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"the bucket endpoint {url!r} is not an http(s) URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if f"{parts.hostname}:{port}" in allowed:
        return None
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            return (f"the bucket endpoint {url!r} is on this machine or a private network ({address}); the "
                    "server's operator can allow it with SAMPAN_BUCKET_ENDPOINTS_ALLOW")
    return None


def credentials(values: dict[str, str]) -> tuple[str, str] | None:
    """The access key pair a bucket's secret holds (AWS-style, or GCS HMAC), or None (a public bucket)."""
    for key_id, key_secret in (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                               ("GOOGLE_ACCESS_KEY_ID", "GOOGLE_ACCESS_KEY_SECRET")):
        if values.get(key_id) and values.get(key_secret):
            return values[key_id], values[key_secret]
    return None


def s3fs_options(spec: dict[str, Any], endpoint: str, uid: int, passwd: Path | None) -> list[str]:
    opts = [f"url={endpoint}", "allow_other", f"uid={uid}", f"gid={uid}", "umask=0022", "mp_umask=0022",
            "nonempty"]
    if spec.get("force_path_style") or not endpoint.startswith("https://s3"):
        opts.append("use_path_request_style")
    opts.append(f"passwd_file={passwd}" if passwd is not None else "public_bucket=1")
    if spec.get("read_only"):
        opts.append("ro")
    if spec.get("requester_pays"):
        opts.append("requester_pays")
    return opts


class Buckets:
    """The server's bucket mounts."""

    def __init__(self, home: Path, allowed: set[str], uid: int) -> None:
        self.dir = home / "buckets"
        self.allowed = allowed
        self.uid = uid
        self.mounted: dict[str, Path] = {}

    def mount(self, workspace: str, spec: dict[str, Any],
              resolve: Callable[[str, list[str]], dict[str, str]]) -> Path:
        """The host directory where `spec`'s bucket is mounted (mounting it first). Raises InvalidError."""
        ref = spec.get("secret") or {}
        values = dict(ref.get("values") or {})
        if ref.get("name"):
            values.update(resolve(ref["name"], list(ref.get("required_keys") or [])))
        keys = credentials(values)
        endpoint = spec.get("endpoint") or ("https://s3.amazonaws.com" if not values.get("GOOGLE_ACCESS_KEY_ID")
                                            else GCS_ENDPOINT)
        problem = endpoint_problem(endpoint, _addresses(endpoint), self.allowed)
        if problem is not None:
            raise InvalidError(f"CloudBucketMount {spec.get('bucket')!r}: {problem}.")
        key = hashlib.sha256(json.dumps([workspace, spec.get("bucket"), spec.get("prefix"), endpoint, keys,
                                         bool(spec.get("read_only"))]).encode()).hexdigest()[:20]
        if key in self.mounted:
            return self.mounted[key]
        if shutil.which("s3fs") is None:
            raise InvalidError("Mounting a CloudBucketMount needs s3fs on the server (Debian package `s3fs`).")
        if not os.path.exists("/dev/fuse"):
            raise InvalidError("Mounting a CloudBucketMount needs FUSE (/dev/fuse) on the server.")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o711)  # containers' root must traverse it to the mount
        target = self.dir / key
        target.mkdir(exist_ok=True)
        passwd = None
        if keys is not None:
            passwd = self.dir / f"{key}.passwd"
            fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{keys[0]}:{keys[1]}\n")
        source = str(spec["bucket"]) + (":/" + str(spec["prefix"]).strip("/") if spec.get("prefix") else "")
        done = subprocess.run(["s3fs", source, str(target), "-o", ",".join(s3fs_options(spec, endpoint, self.uid,
                                                                                        passwd))],
                              capture_output=True, text=True, timeout=MOUNT_WAIT_S, env=_s3fs_env())
        if done.returncode != 0 or not _is_mount(target):
            raise InvalidError(f"CloudBucketMount {spec.get('bucket')!r} could not be mounted: "
                               f"{(done.stderr or done.stdout).strip() or 'is the bucket there?'}")
        self.mounted[key] = target
        return target

    async def close(self) -> None:
        for target in self.mounted.values():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                proc = await asyncio.create_subprocess_exec("umount", "-l", str(target),
                                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await proc.wait()
        self.mounted.clear()


def _addresses(url: str) -> list[str]:
    host = urlsplit(url).hostname or ""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except OSError:
        return []


def _is_mount(path: Path) -> bool:
    with open("/proc/self/mountinfo") as fh:
        return any(line.split()[4] == str(path) for line in fh)


def _s3fs_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "CURL_CA_BUNDLE",
                                                          "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy",
                                                          "http_proxy", "no_proxy")}
