"""`CloudBucketMount` against an S3-compatible server the test starts on loopback (moto's server mode):
a function reads an object through the mount and writes one that the S3 API then serves, and a server
that was not told to trust that endpoint refuses it (a bucket is no way to reach the machine's ports)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import IMAGES_DIR, free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("s3fs") is None, reason="s3fs is not installed (Debian package)"),
              pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                 reason="mounting buckets needs FUSE and a root server")]

APP = """
    import os
    import modal

    app = modal.App("buckets")
    creds = modal.Secret.from_dict({{"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "SECRET"}})
    bucket = modal.CloudBucketMount("media", bucket_endpoint_url="{endpoint}", secret=creds)
    readonly = modal.CloudBucketMount("media", bucket_endpoint_url="{endpoint}", secret=creds, read_only=True,
                                      key_prefix="data/")

    @app.function(volumes={{"/bucket": bucket, "/ro": readonly}})
    def use() -> list:
        found = open("/bucket/data/hello.txt").read()
        with open("/bucket/result.txt", "w") as fh:
            fh.write(found.upper())
        try:
            open("/ro/nope.txt", "w").write("x")
            wrote = True
        except OSError:
            wrote = False
        return [found, sorted(os.listdir("/ro")), wrote]

    @app.local_entrypoint()
    def main():
        print("result", use.remote())
"""



@pytest.fixture
def s3() -> Iterator[tuple[str, object]]:
    boto3 = pytest.importorskip("boto3")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="AKIA", aws_secret_access_key="SECRET",
                          region_name="us-east-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="media")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        client.put_object(Bucket="media", Key="data/hello.txt", Body=b"hello bucket")
        yield endpoint, client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SAMPAN_HOME": str(tmp_path / "home"), "SAMPAN_IMAGES": IMAGES_DIR,
            "SAMPAN_GATEWAY_PORT": "0", "SAMPAN_ENDPOINT_PORT_BASE": "0", **env}
    return subprocess.run([sys.executable, "-m", "sampan", "run", "app.py"], cwd=tmp_path, env=full,
                          capture_output=True, text=True, timeout=180)


def test_a_bucket_is_read_and_written_through_its_mount(s3: tuple[str, object], tmp_path: Path) -> None:
    endpoint, client = s3
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format(endpoint=endpoint)))
    done = run(tmp_path, {"SAMPAN_BUCKET_ENDPOINTS_ALLOW": endpoint.removeprefix("http://")})
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("result "))
    assert line == "result ['hello bucket', ['hello.txt'], False]", "read, a prefix, and read_only refuses writes"
    assert client.get_object(Bucket="media", Key="result.txt")["Body"].read() == b"HELLO BUCKET"  # type: ignore[attr-defined]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(tmp_path / "home" / "buckets") not in mounts, "unmounted when the app stopped"


def test_an_endpoint_on_this_machine_is_refused_unless_allowed(s3: tuple[str, object], tmp_path: Path) -> None:
    endpoint, _ = s3
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format(endpoint=endpoint)))
    done = run(tmp_path, {"SAMPAN_BUCKET_ENDPOINTS_ALLOW": ""})
    assert done.returncode != 0
    assert "is on this machine or a private network" in done.stdout + done.stderr
