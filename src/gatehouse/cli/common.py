"""What the `gatehouse` commands share: the config they load, the store they open, and the
argparse types their `add_*_command` functions take.

Every command that reads config takes --config FILE; without it, the embedded default under
$GATEHOUSE_HOME (or ./.gatehouse).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from gatehouse import config as config_mod
from gatehouse.config import Config
from gatehouse.runtime import data_dir_from_env

if TYPE_CHECKING:
    from gatehouse.policy.keys import KeyHasher
    from gatehouse.store.sql import SqlStore

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

WithConfig = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("--config", "-c", help="YAML config file (default: the embedded default)")
    return sp


def load_config(path: str | None) -> Config:
    if path:
        return config_mod.load(path)
    from gatehouse.defaults import embedded_config

    return embedded_config(data_dir_from_env())


async def open_store(cfg: Config) -> tuple[SqlStore, KeyHasher]:
    """The config's store, migrated to the newest schema, and the key hasher of its secret."""
    from gatehouse.policy.keys import KeyHasher, new_secret
    from gatehouse.runtime import store_url
    from gatehouse.store.migrate import upgrade
    from gatehouse.store.sql import SqlStore, get_or_create_setting

    store = SqlStore(store_url(cfg, data_dir_from_env()))
    await upgrade(store)
    secret = cfg.server.secret or os.environ.get("GATEHOUSE_SECRET") or \
        await get_or_create_setting(store, "key_hmac_secret", new_secret)
    return store, KeyHasher(secret)


def base_url(cfg: Config, host: str, port: int) -> str:
    """The URL clients reach the gateway at: server.public_url, else host and port."""
    if cfg.server.public_url:
        return cfg.server.public_url.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if cfg.server.tls else 'http'}://{shown}:{port}"
