"""A settings module for RQ's own CLI: `rq info -c common.rq_settings` connects where our commands do.

RQ's CLI takes a plain Redis URL (`--url`, or REDIS_URL in the environment) but no Sentinel URL; a
settings module with a `SENTINEL` dict is its way to reach a master through sentinels
(rq.cli.helpers.get_redis_from_config). This module reads REDIS_URL (and DW_SENTINEL_PASSWORD) as
our commands do and gives RQ either form.
"""

from __future__ import annotations

import os
from typing import Any

from common.sentinel import is_sentinel_url, parse_sentinel_url
from common.settings_table import SETTINGS


def rq_settings(url: str, sentinel_password: str = "") -> dict[str, Any]:
    """RQ CLI settings (REDIS_URL, or SENTINEL) for one of our Redis URLs."""
    if not is_sentinel_url(url):
        return {"REDIS_URL": url}
    target = parse_sentinel_url(url, sentinel_password)
    tls: dict[str, Any] = {"ssl": True, **target.tls_options} if target.tls else {}
    return {
        "SENTINEL": {
            "INSTANCES": target.sentinels,
            "MASTER_NAME": target.master,
            "DB": target.db,
            "USERNAME": target.username,
            "PASSWORD": target.password,
            "SSL": target.tls,
            "CONNECTION_KWARGS": dict(target.tls_options),
            "SENTINEL_KWARGS": {"username": target.sentinel_username, "password": target.sentinel_password, **tls},
        }
    }


def _from_env() -> dict[str, Any]:
    url, password = SETTINGS["redis_url"], SETTINGS["sentinel_password"]
    return rq_settings(os.environ.get(url.env) or url.default, os.environ.get(password.env, ""))


globals().update(_from_env())
