"""README stays true: every environment variable and every route is documented."""

from __future__ import annotations

import re
from pathlib import Path

from vedina.config import ENV_VARS, load_settings

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_environment_variable_is_in_the_readme():
    missing = [var for var in ENV_VARS if f"`{var}`" not in README]
    assert missing == []


def test_every_api_route_is_in_the_readme():
    from vedina.app import create_app

    app = create_app(load_settings({}))
    documented = README.replace("{", ":").replace("}", "")
    missing = sorted(
        {route.route for route in app.router.get_routes() if route.route.startswith("/api/") and "*" not in route.route}
        - {path for path in re.findall(r"(/api/[\w/:.-]*)", documented)}
    )
    # A route counts as documented when its path, or its last segment under its documented prefix, appears.
    undocumented = [r for r in missing if f"/{r.rsplit('/', 1)[-1]}" not in documented]
    assert undocumented == []
