"""A real nginx on a free loopback port, for tests and benchmarks.

    >>> with Nginx.static(tmp_path / "nginx", root=media_dir) as nginx:
    ...     httpx.get(nginx.base_url + "/demo/color-bars.mp4")

``Nginx.static`` serves a directory (the reference the media endpoint is
compared with); ``Nginx.proxy`` renders the production template
``nginx/vedina.conf`` in front of a running app. nginx runs in the foreground
(``daemon off``) with every path under its prefix, as root (the tests run as
root and read files in root-only temporary directories).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from string import Template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "nginx" / "vedina.conf"
MIME_TYPES = Path("/etc/nginx/mime.types")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


MAIN_TEMPLATE = """\
user root;
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{servers}
}}
"""


class Nginx:
    def __init__(self, prefix: Path, servers: str, *, workers: int = 1) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (bash scripts/services.sh installs it)")
        self.binary = binary
        self.prefix = prefix.resolve()
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            MAIN_TEMPLATE.format(prefix=self.prefix, workers=workers, mime_types=MIME_TYPES, servers=servers.replace("@PORT@", str(self.port)))
        )
        self._flags = ["-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")]
        subprocess.run([self.binary, "-t", "-q", *self._flags], check=True, capture_output=True, timeout=10)
        self.process = subprocess.Popen(
            [self.binary, *self._flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_listening()

    @classmethod
    def static(cls, prefix: Path, *, root: Path, workers: int = 1) -> Nginx:
        """nginx serving ``root`` directly: the reference for Range behaviour."""
        server = f"""
    server {{
        listen 127.0.0.1:@PORT@;
        location / {{ root {Path(root).resolve()}; }}
    }}"""
        return cls(prefix, server, workers=workers)

    @classmethod
    def proxy(cls, prefix: Path, *, upstream_port: int, media_root: Path) -> Nginx:
        """The production template (nginx/vedina.conf) in front of the app."""
        rendered = Template(TEMPLATE.read_text()).safe_substitute(
            VEDINA_LISTEN="127.0.0.1:@PORT@",
            VEDINA_SERVER_NAME="localhost",
            VEDINA_UPSTREAM=f"127.0.0.1:{upstream_port}",
            VEDINA_MEDIA_ROOT=str(Path(media_root).resolve()),
        )
        return cls(prefix, rendered)

    def _wait_listening(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.prefix / 'error.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nginx not listening on {self.port} after {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            subprocess.run([self.binary, *self._flags, "-s", "stop"], capture_output=True, timeout=10)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
