from dataclasses import replace
from pathlib import Path

import pytest

from shoprank.config import Settings, load_settings
from shoprank.errors import ConfigError


def test_defaults_without_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.warehouse == Path("data/warehouse.duckdb")
    assert settings.marts == Path("data/marts")


def test_file_then_environment_then_cli_options_win(tmp_path):
    config = tmp_path / "shop.toml"
    config.write_text('workdir = "from-file"\nseed = 3\n[simulate]\npreset = "tiny"\ndays = 5\n')
    from_file = load_settings(config, environ={})
    assert (from_file.workdir, from_file.seed, dict(from_file.simulate)) == (
        Path("from-file"),
        3,
        {"preset": "tiny", "days": 5},
    )
    from_env = load_settings(
        config, environ={"SHOPRANK_HOME": "from-env", "SHOPRANK_SEED": "11", "SHOPRANK_PRESET": "small"}
    )
    assert (from_env.workdir, from_env.seed, from_env.simulate["preset"]) == (Path("from-env"), 11, "small")
    from_cli = from_env.with_overrides(workdir="from-cli", seed=1, days=9)
    assert (from_cli.workdir, from_cli.seed, from_cli.simulate["days"], from_cli.simulate["preset"]) == (
        Path("from-cli"),
        1,
        9,
        "small",
    )


def test_the_config_file_is_found_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "shoprank.toml").write_text("seed = 99\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).seed == 99


def test_env_points_dbt_at_the_absolute_workdir(tmp_path):
    assert Settings(workdir=tmp_path / "w").env() == {"SHOPRANK_HOME": str((tmp_path / "w").resolve())}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("seed = [", "is not valid TOML"),
        (
            "colour = 1",
            "unknown key(s) ['colour']; allowed: workdir, seed, profile, project, redis, registry_url, [simulate], [train]",
        ),
        ('profile = "cloud"', 'Unknown profile "cloud"; use one of embedded, production'),
        ('seed = "many"', 'seed must be an integer, got "many"'),
        ("simulate = 3", '"simulate" must be a table ([simulate])'),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, content, message):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigError, match=None) as error:
        load_settings(config, environ={})
    assert message in str(error.value)


def test_missing_config_file_and_bad_seed_variable(tmp_path):
    with pytest.raises(ConfigError, match='Config file ".*nope.toml" not found'):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match='SHOPRANK_SEED must be an integer, got "x"'):
        load_settings(environ={"SHOPRANK_SEED": "x"})


def test_production_servers_come_from_settings_or_the_profile_yaml(tmp_path):
    import yaml

    from shoprank.features.store import write_config

    chosen = load_settings(
        environ={"SHOPRANK_REDIS": "10.0.0.5:6380", "SHOPRANK_REGISTRY_URL": "postgresql+psycopg://feast@db/feast"}
    )
    config = yaml.safe_load(write_config(replace(chosen, workdir=tmp_path, profile="production")).read_text())
    assert config["online_store"]["connection_string"] == "10.0.0.5:6380"
    assert config["registry"]["path"] == "postgresql+psycopg://feast@db/feast"
    default = yaml.safe_load(write_config(Settings(workdir=tmp_path, profile="production")).read_text())
    assert (default["online_store"]["connection_string"], default["registry"]["path"]) == (
        "127.0.0.1:6379",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
