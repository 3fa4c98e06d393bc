"""The salt that pseudonymizes e-mail addresses and phone numbers in staging (the dbt macro
``pseudonymize``): ``SHOPRANK_PII_SALT``, or the file ``SHOPRANK_PII_SALT_FILE`` names (a secret
mounted as a file). The default salt is public, so its hashes of known e-mail addresses can be
recomputed by anyone: the production profile refuses to build without a salt of its own, and the
embedded one warns, once per workdir, that it uses the public one."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from shoprank.config import SHARED_STORES, Settings
from shoprank.errors import ConfigError

SALT_VARIABLE = "SHOPRANK_PII_SALT"
SALT_FILE_VARIABLE = "SHOPRANK_PII_SALT_FILE"
DEFAULT_SALT = "shoprank-default-salt"  # public: the same in dbt_project.yml
WARNED = ".pii-default-salt-warned"  # in the workdir, once it has warned


def configured_salt(environ: Mapping[str, str] | None = None) -> str | None:
    """The salt the environment sets (``SHOPRANK_PII_SALT``, else the file ``SHOPRANK_PII_SALT_FILE``
    names), None when it sets none.

    Raises:
        ConfigError: The salt file cannot be read or is empty.
    """
    environ = os.environ if environ is None else environ
    if environ.get(SALT_VARIABLE):
        return environ[SALT_VARIABLE]
    if not environ.get(SALT_FILE_VARIABLE):
        return None
    path = Path(environ[SALT_FILE_VARIABLE])
    try:
        salt = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f'{SALT_FILE_VARIABLE} names "{path}", which cannot be read ({exc}); fix the path') from None
    if not salt:
        raise ConfigError(f'{SALT_FILE_VARIABLE} names "{path}", which is empty; write the salt into it')
    return salt


def pii_salt(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The salt builds of ``settings``' workdir pseudonymize with.

    Raises:
        ConfigError: The salt file cannot be read or is empty, or the production profile has no salt.
    """
    salt = configured_salt(environ)
    if salt:
        return salt
    if settings.profile in SHARED_STORES:
        raise ConfigError(
            f"The {settings.profile} profile pseudonymizes personal data with a salt of its own: set {SALT_VARIABLE} "
            f"(or {SALT_FILE_VARIABLE}, a file holding it); the public default would let anyone re-identify e-mails"
        )
    marker = settings.workdir / WARNED
    if not marker.exists():
        print(
            f"Warning: e-mail addresses and phone numbers are pseudonymized with the public default salt; "
            f"set {SALT_VARIABLE} before building on real data",
            file=sys.stderr,
        )
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return DEFAULT_SALT
