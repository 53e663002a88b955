"""Serve the dashboard: check the address, make Solara's assets work offline, run uvicorn.

Solara's page loads its JavaScript (the Vuetify app, Vega-Lite) through the server's asset proxy,
which fetches from a CDN unless the files are on disk. The ``solara-assets`` package puts them on
disk, with exact versions in the folder names (``vega@5.21.0``), while Solara's Vega-Lite widget
asks for major versions (``vega@5``). `offline_assets` builds a folder of links that answers both
names, so the page needs no network.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
from pathlib import Path

from market.engines.cache import cache_root

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8521  # Mesa's traditional visualization port
APP = "market.dashboard.app"
DEFAULT_SCENARIO = "free_riding"


class DashboardError(Exception):
    """The dashboard cannot start; the message is one line saying what to do."""


def check_address(host: str, port: int) -> None:
    """Fail with one line when ``host`` does not resolve or ``port`` cannot be bound there."""
    if not 1 <= port <= 65535:
        raise DashboardError(f"--port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise DashboardError(
            f"--host {host!r} is not an address of this machine ({err}); use e.g. 127.0.0.1"
        ) from err
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # as uvicorn binds: a port whose last server just stopped is free, a listened one is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise DashboardError(
                    f"port {port} on {host} is in use; pick another with --port"
                ) from err
            raise DashboardError(
                f"cannot listen on {host}:{port} ({err.strerror}); check --host and --port"
            ) from err


def offline_assets() -> Path | None:
    """A folder for Solara's asset proxy: every package of ``solara-assets`` under its own name
    and under its major version (``vega@5`` -> ``vega@5.21.0``); None without solara-assets."""
    source = Path(sys.prefix) / "share" / "solara" / "cdn"
    if not source.is_dir():
        return None
    target = cache_root() / "solara-cdn"
    target.mkdir(parents=True, exist_ok=True)
    for package in _packages(source):
        relative = package.relative_to(source)
        names = {relative, relative.with_name(re.sub(r"@(\d+)\..*$", r"@\1", relative.name))}
        for name in names:
            link = target / name
            if link.is_symlink() and link.resolve() != package.resolve():
                link.unlink()
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(package, target_is_directory=True)
    return target


def _packages(cdn: Path) -> list[Path]:
    """``name@version`` folders, also scoped ones (``@widgetti/solara-vuetify-app@10.0.3``)."""
    found = []
    for entry in sorted(cdn.iterdir()):
        if entry.name.startswith("@") and entry.is_dir():
            found += [p for p in sorted(entry.iterdir()) if "@" in p.name]
        elif "@" in entry.name:
            found.append(entry)
    return found


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Run the configured dashboard (``app.configure``) until interrupted."""
    check_address(host, port)
    os.environ["SOLARA_APP"] = APP
    import uvicorn
    from solara.server import settings

    settings.main.mode = "production"
    settings.telemetry.mixpanel_enable = False
    settings.theme.show_banner = False
    assets = offline_assets()
    if assets is not None and "SOLARA_ASSETS_PROXY_CACHE_DIR" not in os.environ:
        settings.assets.proxy_cache_dir = assets
    config = uvicorn.Config(
        "solara.server.starlette:app", host=host, port=port, log_level="warning", lifespan="on"
    )
    print(f"admarket dashboard: http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    uvicorn.Server(config).run()


def run_dashboard(scenario: str | None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """``admarket dashboard``: check the address, load and build the scenario, serve it.

    Raises `DashboardError` (or the loader's ``ScenarioError``) with a one-line message.
    """
    check_address(host, port)
    from scenarios.loader import load_scenario

    base = load_scenario(scenario or DEFAULT_SCENARIO)
    try:
        from market.dashboard import app
    except ImportError as err:
        raise DashboardError(
            f"the dashboard needs {err.name or 'its dependencies'}: "
            "pip install 'admarket[dashboard]' (make test installs it)"
        ) from err
    try:
        app.configure(base)
    except (ValueError, TypeError, KeyError) as err:
        raise DashboardError(f"scenario {base.name!r} cannot be shown: {err}") from err
    serve(host, port)
    return 0
