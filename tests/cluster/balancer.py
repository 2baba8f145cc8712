"""nginx on the lab's load-balancer host: the shipped ``nginx/vedina.conf`` with several upstreams.

Rendered the way ``nginx/upstream-instances.conf`` tells operators to: the template's single-server
``upstream`` block is replaced by the instances block, whose servers file lists every app host.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from tests.cluster.netns import Host
from tests.http.nginx_helper import MAIN_TEMPLATE, MIME_TYPES, REPO, TEMPLATE, nginx_binary

INSTANCES = REPO / "nginx" / "upstream-instances.conf"


def render(prefix: Path, *, listen: str, upstreams: list[str], media_root: Path) -> Path:
    """nginx.conf under ``prefix`` for ``upstreams`` (``ip:port`` each); returns its path."""
    site = Template(TEMPLATE.read_text()).safe_substitute(
        VEDINA_LISTEN=listen, VEDINA_SERVER_NAME="vedina.lab", VEDINA_UPSTREAM="unused:1",
        VEDINA_MEDIA_ROOT=str(media_root.resolve()))
    site, removed = re.subn(r"(?ms)^upstream vedina_app \{.*?^\}\n", "", site)
    if removed != 1:
        raise RuntimeError("nginx/vedina.conf has no single `upstream vedina_app` block to replace")
    servers = prefix / "servers.conf"
    servers.write_text("".join(f"server {address};\n" for address in upstreams))
    upstream = Template(INSTANCES.read_text()).safe_substitute(VEDINA_UPSTREAM_SERVERS=str(servers))
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN_TEMPLATE.format(prefix=prefix, workers=2, mime_types=MIME_TYPES, servers=upstream + "\n" + site))
    return conf


class Balancer:
    def __init__(self, host: Host, prefix: Path, *, upstreams: list[str], media_root: Path) -> None:
        self.host = host
        self.prefix = prefix.resolve()
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf = render(self.prefix, listen=f"{host.ip}:80", upstreams=upstreams, media_root=media_root)
        self.url = f"http://{host.ip}"
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (bash scripts/services.sh installs it)")
        self.argv = [binary, "-c", str(self.conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")]

    def start(self) -> None:
        self.host.run([*self.argv, "-t", "-q"])
        self.host.popen(self.argv, log=self.prefix / "stdout.log")
        if self.host.wait_http(f"{self.url}/health", timeout=10):
            return
        raise TimeoutError(f"nginx on {self.host.ip} does not answer /health: "
                           f"{(self.prefix / 'error.log').read_text()[-2000:]}")
