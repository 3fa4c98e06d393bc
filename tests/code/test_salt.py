"""The pseudonymization salt: the production profile refuses to build without one, a salt file
is read, the embedded profile warns once per workdir that it uses the public default."""

from __future__ import annotations

import pytest

from shoprank.config import Settings
from shoprank.errors import ConfigError
from shoprank.salt import DEFAULT_SALT, SALT_FILE_VARIABLE, SALT_VARIABLE, pii_salt


def test_the_production_profile_refuses_to_build_without_a_salt(tmp_path):
    settings = Settings(workdir=tmp_path, profile="production")
    with pytest.raises(ConfigError) as error:
        pii_salt(settings, {})
    assert str(error.value) == (
        "The production profile pseudonymizes personal data with a salt of its own: set SHOPRANK_PII_SALT "
        "(or SHOPRANK_PII_SALT_FILE, a file holding it); the public default would let anyone re-identify e-mails"
    )
    assert pii_salt(settings, {SALT_VARIABLE: "s3cret"}) == "s3cret"


def test_a_salt_file_is_read_and_a_bad_one_named(tmp_path):
    settings = Settings(workdir=tmp_path, profile="production")
    secret = tmp_path / "salt"
    secret.write_text("from-a-file\n")
    assert pii_salt(settings, {SALT_FILE_VARIABLE: str(secret)}) == "from-a-file"
    secret.write_text("  \n")
    with pytest.raises(ConfigError, match=f'SHOPRANK_PII_SALT_FILE names "{secret}", which is empty; write the salt'):
        pii_salt(settings, {SALT_FILE_VARIABLE: str(secret)})
    with pytest.raises(ConfigError, match=r'names ".*nowhere", which cannot be read \(.*\); fix the path'):
        pii_salt(settings, {SALT_FILE_VARIABLE: str(tmp_path / "nowhere")})


def test_the_embedded_profile_warns_once_per_workdir_of_the_public_default(tmp_path, capsys):
    settings = Settings(workdir=tmp_path / "shop")
    assert pii_salt(settings, {}) == DEFAULT_SALT
    assert capsys.readouterr().err == (
        "Warning: e-mail addresses and phone numbers are pseudonymized with the public default salt; "
        "set SHOPRANK_PII_SALT before building on real data\n"
    )
    assert pii_salt(settings, {}) == DEFAULT_SALT
    assert capsys.readouterr().err == ""
    assert pii_salt(Settings(workdir=tmp_path / "other"), {SALT_VARIABLE: "s"}) == "s"
    assert capsys.readouterr().err == ""
