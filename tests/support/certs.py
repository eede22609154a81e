"""Certificates made in the test: a server CA and server certificate for 127.0.0.1/localhost, a client CA
and a client certificate, and a client certificate from an unrelated CA (for mTLS refusals)."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def client_context(self, with_cert: bool = False, stranger: bool = False) -> ssl.SSLContext:
        """What a scraper uses: trusts our server CA; optionally presents a client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if stranger:
            context.load_cert_chain(str(self.stranger_cert), str(self.stranger_key))
        elif with_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, server: bool = False,
          client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
            decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                        critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate, key=None) -> tuple[Path, Path | None]:
    cert_path = folder / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = None
    if key is not None:
        key_path = folder / f"{name}.key"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
    return cert_path, key_path


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, client_ca_key, stranger_ca_key = _key(), _key(), _key()
    ca = _cert("test server CA", ca_key, "test server CA", ca_key, ca=True)
    client_ca = _cert("test client CA", client_ca_key, "test client CA", client_ca_key, ca=True)
    server_key, client_key, stranger_key = _key(), _key(), _key()
    server = _cert("localhost", server_key, "test server CA", ca_key, ca=False, server=True)
    client = _cert("prometheus", client_key, "test client CA", client_ca_key, ca=False, client=True)
    stranger = _cert("prometheus", stranger_key, "stranger CA", stranger_ca_key, ca=False, client=True)
    ca_path, _ = _write(folder, "ca", ca)
    client_ca_path, _ = _write(folder, "client-ca", client_ca)
    server_cert, server_key_path = _write(folder, "server", server, server_key)
    client_cert, client_key_path = _write(folder, "client", client, client_key)
    stranger_cert, stranger_key_path = _write(folder, "stranger", stranger, stranger_key)
    assert server_key_path and client_key_path and stranger_key_path
    return Pki(ca_path, server_cert, server_key_path, client_ca_path, client_cert, client_key_path,
               stranger_cert, stranger_key_path)
