"""cchain-agent over TLS under load, beside the same agent over plain loopback TCP, in one run.

Both agents serve one cached secret from a moto server; wrk (50 connections, keep-alive, 10 s)
reads it with a token header. The TLS agent has an access file naming that token and a
certificate made here (cryptography), and wrk does the handshake once per connection. The
target: at least 1,000 requests/s with a p99 under 20 ms. Run alone: python bench/tls.py
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from agent import agent, wrk
from run import KEY_ALIAS, moto_server

from cloudchain import CloudChain

BIN = Path(sys.executable).parent
SECONDS = 10


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (wrk does not verify; the agent needs one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cchain-agent bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    key_path.chmod(0o600)
    return cert_path, key_path


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="cchain-bench-tls-"))
    token = os.urandom(32).hex()
    token_file = home / "bench.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    access = home / "access.ini"
    sha = hashlib.sha256(token.encode()).hexdigest()
    access.write_text(f"[client bench]\ntoken_sha256 = {sha}\nservices = bench\n")
    cert, key = self_signed(home)
    with moto_server() as port:
        direct = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home / "run"), "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "CLOUDCHAIN_ENDPOINT_URL": direct, "CLOUDCHAIN_KEY_ALIAS": KEY_ALIAS,
        }  # fmt: skip
        if "PYTHONPATH" in os.environ:  # a checkout run without installing it
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        seed = CloudChain(endpoint_url=direct, keyalias=KEY_ALIAS)
        seed.setup(create_key=True)
        seed.save("bench", "user-000", "secret-0-" + "x" * 24)
        query = "/v1/secret?service=bench&user=user-000"
        rows = {}
        program = str(BIN / "cchain-agent")
        with agent(program, env, "--listen", "127.0.0.1:0", "--token-file", str(token_file),
                   "--prefetch", "bench", folder=home) as plain:  # fmt: skip
            rows["loopback TCP (http)"] = wrk(plain.settings["CLOUDCHAIN_AGENT"] + query, token)
        with agent(program, env, "--listen", "127.0.0.1:0", "--tls-cert", str(cert),
                   "--tls-key", str(key), "--access", str(access), "--prefetch", "bench",
                   folder=home) as tls:  # fmt: skip
            rows["TLS 1.2+ with an access file (https)"] = wrk(
                tls.settings["CLOUDCHAIN_AGENT"] + query, token
            )
    print(f"\n{'cchain-agent under wrk -t2 -c50 -d10s, cached reads, keep-alive':<75}")
    if any(load is None for load in rows.values()):
        print(f"{'  load':<75} skipped: wrk is not installed")
        return 0
    base = rows["loopback TCP (http)"]
    for label, load in rows.items():
        assert load is not None and base is not None
        met = load.requests_per_second >= 1000 and load.p99_ms < 20
        print(f"{'  ' + label:<75} {load.requests_per_second:>9.0f} requests/s, "
              f"p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, {load.errors} errors, "
              f"{load.requests_per_second / base.requests_per_second:.2f}x http, "
              f"target (>=1,000/s, p99 <20 ms) {'met' if met else 'MISSED'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
