"""A bitedge inventory: boards by name, in TOML.

    [hosts.pi5]
    host = "raspberrypi.local"   # or an ~/.ssh/config alias
    user = "pi"
    port = 22
    identity = "~/.ssh/id_ed25519"
    target = "rpi5"
    remote_dir = "~/bitedge"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bitedge.deploy.ssh import HostSpec
from bitedge.errors import BitedgeError

_KEYS = {"host": str, "user": str, "port": int, "identity": str, "target": str, "remote_dir": str}


def load_inventory(path: str | Path) -> dict[str, HostSpec]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BitedgeError(f"{path}: inventory file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise BitedgeError(f"{path}: not valid TOML: {e}") from None
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise BitedgeError(f"{path}: no [hosts.NAME] tables")
    out = {}
    for name, entry in hosts.items():
        if not isinstance(entry, dict):
            raise BitedgeError(f"{path}: hosts.{name} must be a table")
        for key, value in entry.items():
            if key not in _KEYS:
                raise BitedgeError(f"{path}: hosts.{name}.{key}: unknown key (known: {', '.join(_KEYS)})")
            if not isinstance(value, _KEYS[key]) or isinstance(value, bool):
                raise BitedgeError(f"{path}: hosts.{name}.{key}: expected {_KEYS[key].__name__}, got {value!r}")
        if "port" in entry and not 0 < entry["port"] < 65536:
            raise BitedgeError(f"{path}: hosts.{name}.port: {entry['port']} is not a port number")
        out[name] = HostSpec(
            name=name, host=entry.get("host", name), user=entry.get("user"), port=entry.get("port"),
            identity=entry.get("identity"), target=entry.get("target"), remote_dir=entry.get("remote_dir", "~/bitedge"),
        )
    return out


def resolve_hosts(names: list[str], inventory: dict[str, HostSpec] | None = None) -> list[HostSpec]:
    """Inventory names first; anything else is an ssh_config alias or user@host:port."""
    inventory = inventory or {}
    return [inventory[n] if n in inventory else HostSpec.parse(n) for n in names]
