"""A workdir's identity follows it through a move and is renewed in a copy; the production
profile's default Feast project is named after it, an explicit project wins."""

from __future__ import annotations

import json
import shutil

import pytest

from shoprank.config import load_settings
from shoprank.errors import ConfigError
from shoprank.workdir import IDENTITY_FILE, identify


def test_an_identity_is_made_once_and_kept_where_it_was_made(tmp_path):
    workdir = tmp_path / "shop"
    first = identify(workdir)
    assert len(first.id) == 32 and first.path == workdir.resolve()
    assert json.loads((workdir / IDENTITY_FILE).read_text()) == {"id": first.id, "path": str(workdir.resolve())}
    assert identify(workdir) == first


def test_a_copy_gets_an_id_of_its_own_and_leaves_the_original_as_it_was(tmp_path):
    original = tmp_path / "shop"
    made = identify(original)
    recorded = (original / IDENTITY_FILE).read_text()
    shutil.copytree(original, tmp_path / "copy")
    copied = identify(tmp_path / "copy")
    assert copied.id != made.id and copied.path == (tmp_path / "copy").resolve()
    assert identify(tmp_path / "copy") == copied
    assert (original / IDENTITY_FILE).read_text() == recorded and identify(original) == made


def test_a_moved_workdir_keeps_its_id(tmp_path):
    made = identify(tmp_path / "shop")
    (tmp_path / "shop").rename(tmp_path / "moved")
    moved = identify(tmp_path / "moved")
    assert moved.id == made.id and moved.path == (tmp_path / "moved").resolve()


def test_a_copy_whose_original_changed_identity_keeps_the_id(tmp_path):
    made = identify(tmp_path / "shop")
    shutil.copytree(tmp_path / "shop", tmp_path / "copy")
    (tmp_path / "shop" / IDENTITY_FILE).unlink()
    identify(tmp_path / "shop")  # the original started over: the copy's id is no one else's
    assert identify(tmp_path / "copy").id == made.id


@pytest.mark.parametrize("content", ["not json", '{"id": "x", "path": "/tmp"}', '{"id": "' + "a" * 32 + '"}', "[]"])
def test_a_broken_identity_names_the_file_and_the_fix(tmp_path, content):
    (tmp_path / IDENTITY_FILE).write_text(content)
    with pytest.raises(ConfigError, match=f'Workdir identity "{tmp_path / IDENTITY_FILE}" is not .*; delete it'):
        identify(tmp_path)


def test_the_production_project_is_the_workdirs_unless_one_is_given(tmp_path):
    embedded = load_settings(environ={"SHOPRANK_HOME": str(tmp_path / "a")})
    assert embedded.project == "shoprank" and not (tmp_path / "a").exists()  # files of the workdir: no identity
    production = {"SHOPRANK_HOME": str(tmp_path / "a"), "SHOPRANK_PROFILE": "production"}
    first = load_settings(environ=production)
    assert first.project == f"shoprank_{identify(tmp_path / 'a').id[:8]}"
    other = load_settings(environ=production, options={"workdir": tmp_path / "b"})
    assert other.project == f"shoprank_{identify(tmp_path / 'b').id[:8]}" != first.project
    assert load_settings(environ={**production, "SHOPRANK_PROJECT": "shoprank"}).project == "shoprank"
    assert load_settings(environ=production, options={"project": "mine"}).project == "mine"
    config = tmp_path / "shop.toml"
    config.write_text('project = "from_file"\n')
    assert load_settings(config, environ=production).project == "from_file"
    assert load_settings(environ={}, options={"workdir": tmp_path / "a", "profile": "production"}) == first
