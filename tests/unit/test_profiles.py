"""Profiles of config.toml (sampan/profiles.py), as Modal's ~/.modal.toml."""

from __future__ import annotations

import pytest

from sampan import profiles
from sampan.exception import InvalidError, NotFoundError

OLD = 'workspace = "alice"\ntoken_id = "tk-1"\ntoken_secret = "s1"\n'
TWO = ('[default]\nworkspace = "alice"\ntoken_id = "tk-1"\ntoken_secret = "s1"\n\n'
       '# a comment\n[staging]\nworkspace = "bob"\ntoken_id = "tk-2"\ntoken_secret = "s2"\n'
       'server_url = "http://10.0.0.5:8486"\nactive = true\n')


def test_files_without_tables_are_the_default_profile() -> None:
    data = profiles.parse(OLD)
    assert data == {"default": {"workspace": "alice", "token_id": "tk-1", "token_secret": "s1"}}
    assert profiles.active(data) == "default"


def test_the_active_profile() -> None:
    data = profiles.parse(TWO)
    assert profiles.active(data) == "staging"
    assert profiles.active(data, "default") == "default"
    with pytest.raises(NotFoundError, match="No profile named 'nope'"):
        profiles.active(data, "nope")
    switched = profiles.activate(data, "default")
    assert profiles.active(switched) == "default" and "active" not in switched["staging"]
    assert profiles.parse(profiles.render(switched)) == switched
    both = {"a": {"active": True}, "b": {"active": True}}
    with pytest.raises(InvalidError, match="More than one Modal profile is active"):
        profiles.active(both)
    assert profiles.active({}) is None


def test_values_cannot_break_the_file() -> None:
    with pytest.raises(InvalidError, match="Invalid value"):
        profiles.render({"default": {"workspace": 'x"\n[evil]'}})
