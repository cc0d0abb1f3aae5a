"""A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

Each server gets a free port, its own storage folder and, optionally, htpasswd (bcrypt) auth.
Also a TCP proxy that cuts responses after a number of bytes, to interrupt downloads for real.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REGISTRY = Path("/usr/bin/docker-registry")


def registry_available() -> bool:
    return REGISTRY.is_file()


def empty_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config of the test's own (DOCKER_CONFIG): never the user's logins."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    storage: Path
    process: subprocess.Popen[bytes]
    certificate: Path | None = None  # the CA to trust when it serves HTTPS

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@dataclass(frozen=True)
class TokenService:
    realm: str  # http://127.0.0.1:PORT/token
    service: str
    issuer: str
    certificate: Path


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, valid for two days."""
    cert, key = folder / "tls.pem", folder / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def _config(folder: Path, port: int, htpasswd: Path | None, token: TokenService | None = None,
            tls: tuple[Path, Path] | None = None, addr: str = "127.0.0.1") -> str:
    text = f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {folder / 'storage'}
  delete:
    enabled: true
http:
  addr: {addr}:{port}
  secret: bootpack-test
"""
    if tls is not None:
        text += f"""  tls:
    certificate: {tls[0]}
    key: {tls[1]}
"""
    if htpasswd is not None:
        text += f"""auth:
  htpasswd:
    realm: bootpack-test
    path: {htpasswd}
"""
    if token is not None:
        text += f"""auth:
  token:
    realm: {token.realm}
    service: {token.service}
    issuer: {token.issuer}
    rootcertbundle: {token.certificate}
"""
    return text


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")
    return path


@contextlib.contextmanager
def run_registry(folder: Path, htpasswd: Path | None = None, token: TokenService | None = None,
                 tls: bool = False, addr: str = "127.0.0.1") -> Iterator[Registry]:
    """Start a registry storing into folder/storage; stop it (by its pid) afterwards.

    With tls=True it serves HTTPS with a self-signed certificate (Registry.certificate). `addr`
    is the address it listens on: loopback, or a test network's gateway (the host's address on
    a Docker bridge the test made) for containers on that network."""
    folder.mkdir(parents=True, exist_ok=True)
    certificate = self_signed_certificate(folder) if tls else None
    scheme = "https" if tls else "http"
    context = ssl.create_default_context(cafile=str(certificate[0])) if certificate else None
    for _attempt in range(5):
        port = free_port()
        config = folder / "config.yml"
        config.write_text(_config(folder, port, htpasswd, token, certificate, addr))
        log = (folder / "registry.log").open("wb")
        process = subprocess.Popen([str(REGISTRY), "serve", str(config)], stdout=log,
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        up = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"{scheme}://{addr}:{port}/v2/", timeout=1, context=context)
                up = True
            except urllib.error.HTTPError:
                up = True  # 401 with auth: it answers
            except OSError:
                time.sleep(0.1)
                continue
            break
        if up:
            break
        process.kill()
        process.wait()
    else:
        raise RuntimeError(f"docker-registry did not start; see {folder / 'registry.log'}")
    try:
        yield Registry(host=f"{addr}:{port}", storage=folder / "storage", process=process,
                       certificate=certificate[0] if certificate else None)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def cutting_proxy(target: str, limit: int, stall: bool = False) -> Iterator[str]:
    """127.0.0.1:PORT forwarding to target; each connection's response stops after `limit` bytes:
    the connection is closed, or with stall=True kept open with nothing more sent."""
    host, port = target.rsplit(":", 1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket, budget: int | None) -> None:
        sent = 0
        try:
            while not stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if budget is not None and sent + len(data) > budget:
                    dst.sendall(data[: budget - sent])
                    if stall:
                        stop.wait()
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection((host, int(port)))
            threading.Thread(target=pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, limit), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def copy_bundle(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)
    archive = src.with_name(src.name + ".tar.gz")
    if archive.exists():
        shutil.copyfile(archive, dst.with_name(dst.name + ".tar.gz"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_key_id(der_public_key: bytes) -> str:
    """distribution's key ID: base32 of the first 240 bits of sha256(DER), in groups of 4."""
    encoded = base64.b32encode(hashlib.sha256(der_public_key).digest()[:30]).decode()
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


@contextlib.contextmanager
def token_service(folder: Path, user: str, password: str) -> Iterator[TokenService]:
    """A minimal Docker token server (RS256 JWTs signed with openssl) granting what is asked
    to `user`:`password` and refusing anyone else, like Harbor, GitLab or GHCR would."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "token.key", folder / "token.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=bootpack-test-token"],
                   check=True, capture_output=True)
    pem = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, check=True,
                         capture_output=True).stdout
    kid = _libtrust_key_id(der)
    service, issuer = "bootpack-test", "bootpack-test-issuer"
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def sign(scopes: list[str], subject: str) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": kid}
        claims = {"iss": issuer, "sub": subject, "aud": service, "exp": now + 600, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            given = self.headers.get("Authorization")
            if given is not None and given != expected:
                self.send_response(401)
                self.end_headers()
                return
            scopes = query.get("scope", []) if given else []  # anonymous: a token with no access
            body = json.dumps({"token": sign(scopes, user if given else "")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TokenService(realm=f"http://127.0.0.1:{server.server_address[1]}/token", service=service,
                           issuer=issuer, certificate=cert)
    finally:
        server.shutdown()
        server.server_close()
