"""The one configuration reader (runtime/settings.py): typed getters over a TOML file and the
environment, errors naming the key, the file and the variable, unknown names refused."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.settings import ConfigError, Table, from_document, read

PREFIX = "FIELDPACT_TEST_"


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"
    NONE = "none"  # never configurable: excluded below


@dataclass(frozen=True, kw_only=True)
class Sample:
    name: str
    count: int
    ratio: float
    period_s: float
    enabled: bool
    data: Path
    color: Color
    tags: tuple[str, ...]
    labels: dict[str, str]
    host: str
    port: int
    items: tuple[str, ...]
    extra: str | None


def build(t: Table) -> Sample:
    net = t.table("net")
    return Sample(
        name=t.string("name"), count=t.integer("count", 1, min=0, max=10),
        ratio=t.number("ratio", 1.0, min=0), period_s=t.seconds("period_s", 1.0, above=0),
        enabled=t.boolean("enabled", False), data=t.path("data", Path("default.db")),
        color=t.choice("color", Color, Color.RED, exclude=(Color.NONE,)),
        tags=t.strings("tags", ()), labels=t.labels("labels", {}),
        host=net.string("host", "127.0.0.1"), port=net.integer("port", 502),
        items=tuple(i.string("id") for i in t.tables("items")),
        extra=(x.string("value") if (x := t.optional_table("extra")) else None))


def parse(doc: dict[str, Any], env: dict[str, str] | None = None, base: Path | None = None,
          file: Path | None = None) -> Sample:
    return from_document(doc, build, prefix=PREFIX, env=env or {}, file=file, base=base)


def error(doc: dict[str, Any], env: dict[str, str] | None = None,
          file: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(doc, env, file=file)
    return info.value


def test_typed_values_are_read_from_the_document() -> None:
    s = parse({"name": "n", "count": 3, "ratio": 2, "period_s": 0.25, "enabled": True,
               "data": "/var/x.db", "color": "blue", "tags": ["a", "b"], "labels": {"k": "v"},
               "net": {"host": "h", "port": 1502}, "items": [{"id": "i1"}, {"id": "i2"}],
               "extra": {"value": "e"}})
    assert s == Sample(name="n", count=3, ratio=2.0, period_s=0.25, enabled=True,
                       data=Path("/var/x.db"), color=Color.BLUE, tags=("a", "b"),
                       labels={"k": "v"}, host="h", port=1502, items=("i1", "i2"), extra="e")


def test_defaults_fill_what_the_document_leaves_out() -> None:
    s = parse({"name": "n"})
    assert (s.count, s.period_s, s.enabled, s.data, s.color, s.host, s.items, s.extra) == \
        (1, 1.0, False, Path("default.db"), Color.RED, "127.0.0.1", (), None)


def test_relative_paths_resolve_against_the_base_and_an_empty_one_is_unset(tmp_path: Path) -> None:
    assert parse({"name": "n", "data": "j/x.db"}, base=tmp_path).data == tmp_path / "j" / "x.db"
    assert parse({"name": "n", "data": "j/x.db"}).data == Path("j/x.db")  # no base: as written
    assert parse({"name": "n", "data": ""}).data == Path("default.db")


def test_the_environment_wins_and_its_text_is_parsed_like_toml() -> None:
    s = parse({"name": "file", "count": 2, "net": {"port": 502}},
              {PREFIX + "NAME": "env", PREFIX + "COUNT": "7", PREFIX + "PERIOD_S": "0.5",
               PREFIX + "ENABLED": "true", PREFIX + "RATIO": "3", PREFIX + "COLOR": "blue",
               PREFIX + "TAGS": "a, b", PREFIX + "NET__PORT": "1502", "OTHER_VAR": "ignored"})
    assert (s.name, s.count, s.period_s, s.enabled, s.ratio, s.color, s.tags, s.port) == \
        ("env", 7, 0.5, True, 3.0, Color.BLUE, ("a", "b"), 1502)
    assert parse({"name": "n"}, {PREFIX + "ENABLED": "0"}).enabled is False


def test_a_single_underscore_also_enters_a_table() -> None:
    assert parse({"name": "n"}, {PREFIX + "NET_HOST": "h"}).host == "h"


def test_a_variable_for_a_key_of_an_absent_table_makes_the_table_present() -> None:
    assert parse({"name": "n"}, {PREFIX + "EXTRA__VALUE": "from-env"}).extra == "from-env"


def test_a_key_set_by_both_spellings_is_refused() -> None:
    err = error({"name": "n"}, {PREFIX + "NET__HOST": "a", PREFIX + "NET_HOST": "b"})
    assert err.key == "net.host" and "set twice" in str(err)


def test_a_single_underscore_naming_two_keys_is_refused_as_ambiguous() -> None:
    def both(t: Table) -> tuple[str, str]:
        return t.string("net_host", "a"), t.table("net").string("host", "b")
    with pytest.raises(ConfigError, match="ambiguous: it also names net_host; use __"):
        from_document({}, both, prefix=PREFIX, env={PREFIX + "NET_HOST": "x"})
    assert from_document({}, both, prefix=PREFIX, env={PREFIX + "NET__HOST": "x"}) == ("a", "x")


def test_an_unknown_key_is_refused_naming_the_nearest_valid_one() -> None:
    err = error({"name": "n", "coutn": 3})
    assert err.key == "coutn" and "nearest valid name: count" in str(err)
    nested = error({"name": "n", "net": {"hots": "h"}})
    assert nested.key == "net.hots" and "nearest valid name: host" in str(nested)
    item = error({"name": "n", "items": [{"id": "a"}, {"id": "b", "idd": "c"}]})
    assert item.key == "items[1].idd"


def test_a_typo_of_a_required_key_is_named_rather_than_the_missing_key() -> None:
    err = error({"names": "n"})
    assert err.key == "names" and "nearest valid name: name" in str(err)
    var = error({}, {PREFIX + "NAMES": "n"})
    assert var.key == PREFIX + "NAMES" and f"nearest valid name: {PREFIX}NAME" in str(var)


def test_a_valid_key_read_later_is_not_taken_for_a_typo_of_a_missing_one() -> None:
    def two(t: Table) -> tuple[str, str]:
        return t.string("journal"), t.string("journal_key")
    with pytest.raises(ConfigError) as info:
        from_document({"journal_key": "k"}, two, prefix=PREFIX, env={})
    assert info.value.key == "journal" and info.value.reason == "is required"
    with pytest.raises(ConfigError) as info:
        from_document({}, two, prefix=PREFIX, env={PREFIX + "JOURNAL_KEY": "k"})
    assert info.value.key == "journal" and info.value.reason == "is required"


def test_an_unknown_variable_is_refused_naming_the_nearest_valid_one() -> None:
    err = error({"name": "n"}, {PREFIX + "PERIOD": "2"})
    assert err.key == PREFIX + "PERIOD" and err.env == PREFIX + "PERIOD"
    assert f"nearest valid name: {PREFIX}PERIOD_S" in str(err)
    assert "unknown environment variable" in str(error({"name": "n"}, {PREFIX + "TYPO": "x"}))


@pytest.mark.parametrize(("doc", "key", "reason"), [
    ({}, "name", "is required"),
    ({"name": ""}, "name", "non-empty string"),
    ({"name": 5}, "name", "non-empty string"),
    ({"name": "n", "count": "3"}, "count", "must be an integer"),  # the file carries types
    ({"name": "n", "count": True}, "count", "must be an integer"),
    ({"name": "n", "count": 11}, "count", "within 0..10"),
    ({"name": "n", "ratio": -1}, "ratio", ">= 0"),
    ({"name": "n", "period_s": 0}, "period_s", "> 0"),
    ({"name": "n", "period_s": "soon"}, "period_s", "must be a number"),
    ({"name": "n", "enabled": "yes"}, "enabled", "true or false"),
    ({"name": "n", "color": "none"}, "color", "one of red, blue"),
    ({"name": "n", "tags": []}, "tags", "non-empty array"),
    ({"name": "n", "labels": {"k": 1}}, "labels", "string labels"),
    ({"name": "n", "net": "h"}, "net", "must be a table"),
    ({"name": "n", "items": {"id": "x"}}, "items", "array of tables"),
    ({"name": "n", "items": [{}]}, "items[0].id", "is required"),
])
def test_bad_values_name_the_key_and_the_reason(doc: dict[str, Any], key: str, reason: str) -> None:
    err = error(doc)
    assert err.key == key and reason in err.reason


def test_a_message_names_the_key_the_file_and_the_variable(tmp_path: Path) -> None:
    file = tmp_path / "x.toml"
    msg = str(error({"name": "n", "net": {"port": "x"}}, file=file))
    assert "net.port='x'" in msg and str(file) in msg and PREFIX + "NET__PORT" in msg
    from_env = str(error({"name": "n"}, {PREFIX + "NET__PORT": "x"}, file=file))
    assert f"[variable {PREFIX}NET__PORT, over file {file}]" in from_env
    assert f"[file {file}, variable {PREFIX}NAME]" in str(error({}, file=file))  # where to set it
    unknown = error({"name": "n", "coutn": 1}, file=file)
    assert str(unknown).endswith(f"[file {file}]")  # no variable sets a key that does not exist


def test_array_items_are_read_from_the_file_only() -> None:
    err = error({"name": "n", "items": [{}]})
    assert err.env is None and "variable" not in str(err)
    table = error({"name": "n", "net": "h"})  # no variable sets a whole table
    assert table.key == "net" and table.env is None


def test_a_secret_is_never_shown_and_a_long_value_is_cut() -> None:
    def secret(t: Table) -> int:
        return t.integer("pin")
    with pytest.raises(ConfigError) as info:
        from_document({"password": ""}, lambda t: t.string("password", secret=True),
                      prefix=PREFIX, env={})
    assert "***" in str(info.value) and "''" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        from_document({"pin": "9" * 10_000}, secret, prefix=PREFIX, env={})
    assert len(str(info.value)) < 300


def test_file_text_reads_the_named_file_or_names_key_and_path(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    def pw(t: Table) -> str | None:
        return t.file_text("password_file", None)
    assert from_document({"password_file": "pw"}, pw, prefix=PREFIX, env={}, base=tmp_path) == "s3cret"
    assert from_document({}, pw, prefix=PREFIX, env={}) is None
    with pytest.raises(ConfigError) as info:
        from_document({"password_file": "gone"}, pw, prefix=PREFIX, env={}, base=tmp_path)
    assert info.value.key == "password_file" and str(tmp_path / "gone") in str(info.value)


def test_read_parses_the_file_and_names_it_when_it_cannot(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('name = "from-file"\ndata = "rel.db"\n')
    s = read(path, build, prefix=PREFIX, env={}, relative_to_file=True)
    assert (s.name, s.data) == ("from-file", tmp_path / "rel.db")
    assert read(None, build, prefix=PREFIX, env={PREFIX + "NAME": "env-only"}).name == "env-only"
    path.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        read(path, build, prefix=PREFIX, env={})
    assert info.value.file == path
    with pytest.raises(ConfigError, match="cannot read"):
        read(tmp_path / "missing.toml", build, prefix=PREFIX, env={})
