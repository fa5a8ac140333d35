"""The control API over TLS with the operator's certificate: the CLI on the server's machine, and the
containers (which are given the certificate to trust), reach it over HTTPS; plain HTTP gets nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import textwrap
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.e2e.test_deploy import Sampan, sampan  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

APP = """
    import modal

    app = modal.App("tls")

    @app.function()
    def inner(x: int) -> int:
        return 2 * x

    @app.function()
    @modal.fastapi_endpoint()
    def outer():
        return {"v": inner.remote(21)}  # from the container, over HTTPS to the control API
"""


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sampan-test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_control_api_over_tls(sampan: Sampan, tmp_path: Path) -> None:  # noqa: F811
    cert, key = self_signed(tmp_path)
    sampan.env.update({"SAMPAN_TLS_CERT": str(cert), "SAMPAN_TLS_KEY": str(key)})
    sampan.run("server", "start")
    control = sampan.run("server", "status").stdout.split("control API ", 1)[1].split(",")[0].strip()
    assert control.startswith("https://127.0.0.1:")
    (tmp_path / "tls.py").write_text(textwrap.dedent(APP))
    sampan.run("deploy", str(tmp_path / "tls.py"))
    assert requests.get(sampan.urls("tls")["outer"], timeout=120).json() == {"v": 42}
    assert requests.get(f"{control}/v1/health", verify=str(cert), timeout=10).status_code == 401  # TLS, no token
    plain = control.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{plain}/v1/health", timeout=10)
    untrusted = sampan.run("app", "list", check=False, env={"SAMPAN_TLS_CERT": ""})
    assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stdout + untrusted.stderr
