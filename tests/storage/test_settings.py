from __future__ import annotations

from pathlib import Path

import pytest

from storage import ConfigError, load_settings

SECRET = "123456:AAE-very-secret-token"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("BOT_TOKEN", "TELEGRAM_API_URL", "DATA_DIR", "BASE_MODEL", "DEVICE", "TRAIN_STEPS",
                 "NUM_CLASS_IMAGES", "DRAW_STEPS", "MIN_PHOTOS", "MAX_PHOTOS", "ALLOWED_USERS", "ADMIN_IDS",
                 "DAILY_TRAININGS", "LOG_LEVEL", "DATABASE_URL", "PRIOR", "TRAIN_RESOLUTION"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_architecture_table() -> None:
    s = load_settings()
    assert s.data_dir == Path("./data")
    assert (s.device, s.num_class_images, s.draw_steps, s.min_photos, s.max_photos) == ("auto", None, None, 3, 20)
    assert s.prior is None and s.train_resolution is None  # the family's own choices
    assert s.train_steps is None and s.allowed_users == frozenset() and s.admin_ids == frozenset()


def test_values_come_from_the_environment_and_dot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALLOWED_USERS=1, 2,3\nTRAIN_STEPS=\nDEVICE=cuda:1\n")
    monkeypatch.setenv("MAX_PHOTOS", "12")
    s = load_settings()
    assert s.allowed_users == {1, 2, 3}
    assert s.train_steps is None
    assert s.device == "cuda:1"
    assert s.max_photos == 12


def test_the_token_never_shows_in_repr_or_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", SECRET)
    monkeypatch.setenv("DEVICE", "gpu0")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    assert SECRET not in str(bad.value)
    monkeypatch.setenv("DEVICE", "cpu")
    s = load_settings()
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in s.model_dump_json()
    assert s.require_bot_token() == SECRET


def test_the_database_defaults_to_sqlite_in_data_dir_and_its_password_never_shows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    assert load_settings().database_url == f"sqlite:///{tmp_path / 'd' / 'kabina.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", "mysql://kabina:pw-SECRET@db/kabina")
    with pytest.raises(ConfigError, match="DATABASE_URL: expected sqlite:///") as bad:
        load_settings()
    assert "pw-SECRET" not in str(bad.value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://kabina:pw-SECRET@db/kabina")
    s = load_settings()
    assert s.database_url.startswith("postgresql://") and "pw-SECRET" not in repr(s)


async def test_a_sqlite_database_url_puts_the_database_where_it_says(tmp_path: Path) -> None:
    from storage import Storage

    store = await Storage.open(tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}")
    await store.users.upsert(1)
    await store.close()
    assert (tmp_path / "elsewhere.sqlite3").exists() and not (tmp_path / "data" / "kabina.sqlite3").exists()
    with pytest.raises(ConfigError, match="DATABASE_URL must start with"):
        await Storage.open(tmp_path / "data", database_url="mysql://x/y")


def test_a_bad_value_is_one_clear_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_USERS", "alice,bob")
    monkeypatch.setenv("MIN_PHOTOS", "0")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    message = str(bad.value)
    assert "\n" not in message
    assert "ALLOWED_USERS" in message and "MIN_PHOTOS" in message


def test_min_photos_above_max_photos_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIN_PHOTOS", "10")
    monkeypatch.setenv("MAX_PHOTOS", "5")
    with pytest.raises(ConfigError, match="MIN_PHOTOS"):
        load_settings()


def test_missing_base_model_names_the_variable_and_what_to_put_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_settings().require_base_model()
    assert "BASE_MODEL" in str(missing.value) and "diffusers folder" in str(missing.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(base_model=tmp_path / "nope").require_base_model()
    (tmp_path / "model").mkdir()
    assert load_settings(base_model=tmp_path / "model").require_base_model() == tmp_path / "model"


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="BOT_TOKEN"):
        load_settings().require_bot_token()
