"""Mutual TLS between schedcp processes, and who a caller is.

Every process has one identity: its role (observer, planner, executor, verifier, learner) or
`operator` for the CLI. With `SCHEDCP_TLS_DIR` set, a process presents `<dir>/<identity>.pem`
(key `<dir>/<identity>-key.pem`) and trusts only certificates signed by `<dir>/ca.pem`;
`SCHEDCP_TLS_CERT`/`_KEY`/`_CA` name the three files explicitly instead. Servers require a
client certificate. A certificate's common name is its identity: `planner`, or
`executor.<host>` for one host's executor (the part before the first dot is the role).

`schedcp certs init` makes a development CA and a certificate for every identity
(`create_dev_certs`); production fleets use their own CA with the same names.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schedcp.runtime.config import Role, Settings
from schedcp.runtime.errors import StartupError

OPERATOR = "operator"
IDENTITIES = (*(r.value for r in Role), OPERATOR)
CERT_DAYS = 365


@dataclass(frozen=True)
class TlsFiles:
    """The CA to trust, and this process's certificate and key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) bytes; StartupError naming the missing file."""
        contents = []
        for what, path in (("CA certificate", self.ca), ("certificate", self.cert), ("private key", self.key)):
            try:
                contents.append(path.read_bytes())
            except OSError as exc:
                raise StartupError(f"TLS is on but its {what} {path} cannot be read ({exc.strerror}); "
                                   "create the files with `schedcp certs init` or fix SCHEDCP_TLS_*") from None
        return contents[0], contents[1], contents[2]


def files_for(settings: Settings, identity: str) -> TlsFiles | None:
    """This process's TLS files, or None when TLS is off."""
    if settings.tls_cert:
        return TlsFiles(Path(settings.tls_ca), Path(settings.tls_cert), Path(settings.tls_key))
    if settings.tls_dir:
        base = Path(settings.tls_dir)
        return TlsFiles(base / "ca.pem", base / f"{identity}.pem", base / f"{identity}-key.pem")
    return None


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def peer_identity(context: grpc.aio.ServicerContext) -> str:
    """The caller certificate's common name ("" without TLS or without a certificate)."""
    names = (context.auth_context() or {}).get("x509_common_name") or [b""]
    return names[0].decode(errors="replace")


def caller(context: grpc.aio.ServicerContext) -> str:
    """Who is calling, for records: the certificate identity, or "local <peer>" without TLS."""
    return peer_identity(context) or f"local {context.peer()}"


def role_of(identity: str) -> str:
    return identity.split(".", 1)[0]


def create_dev_certs(directory: Path, hosts: list[str] = ()) -> list[Path]:
    """A development CA and a certificate for every identity, valid for localhost, 127.0.0.1
    and `hosts` (names or IP addresses the services are reached by). Keys are written 0600.
    Existing files are kept (the CA signs nothing new then): delete the directory to start over."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    if ca_path.exists():
        raise StartupError(f"{ca_path} exists: keep using it, or remove {directory} to make a new CA")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schedcp development CA")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    written = [_write_pem(ca_path, ca.public_bytes(serialization.Encoding.PEM)),
               _write_key(ca_key_path, ca_key)]
    for identity in IDENTITIES:
        written += issue(directory, identity, ca, ca_key, hosts)
    return written


def issue(directory: Path, identity: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
          hosts: list[str] = ()) -> list[Path]:
    """A certificate for `identity` signed by the CA, usable as server and client."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(role_of(identity)),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (_builder(subject, ca.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return [_write_pem(directory / f"{identity}.pem", cert.public_bytes(serialization.Encoding.PEM)),
            _write_key(directory / f"{identity}-key.pem", key)]


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS)))


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
