from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError


def test_defaults_put_everything_in_the_data_folder(tmp_path: Path) -> None:
    s = load_settings(env={"ARCHIVIST_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'archivist.db'}"
    assert s.redis_url is None
    assert s.providers == ()
    assert s.config_file is None


def test_toml_in_home_is_read_and_environment_overrides_it(tmp_path: Path) -> None:
    (tmp_path / "archivist.toml").write_text(
        'database_url = "sqlite:///from-file.db"\n'
        "[retrieval]\ntop_k = 8\n"
        '[[providers]]\nname = "local"\nkind = "openai"\nbase_url = "http://127.0.0.1:8080/v1"\n'
        "timeout_s = 12\n[providers.breaker]\nfailure_threshold = 3\n"
    )
    env = {
        "ARCHIVIST_HOME": str(tmp_path),
        "ARCHIVIST_REDIS_URL": "redis://127.0.0.1:6399/0",
    }
    s = load_settings(env=env)
    assert s.retrieval.top_k == 8
    assert s.database_url == "sqlite:///from-file.db"
    assert s.redis_url == "redis://127.0.0.1:6399/0"
    assert s.providers[0].name == "local" and s.providers[0].timeout_s == 12.0
    assert s.providers[0].breaker is not None
    assert s.providers[0].breaker.failure_threshold == 3
    env["ARCHIVIST_DATABASE_URL"] = "postgresql+psycopg://u@127.0.0.1/db"
    assert load_settings(env=env).database_url == "postgresql+psycopg://u@127.0.0.1/db"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[retrieval]\ntop_k = 'many'\n", "retrieval.top_k"),
        ("[retrieval]\ntop_k = 0\n", "retrieval.top_k"),
        ("[retrieval]\nfusion = 'magic'\n", "retrieval.fusion"),
        ("[retreival]\ntop_k = 3\n", "retreival"),
        ("[cache]\nsimilarity_threshold = 2\n", "cache.similarity_threshold"),
        ('[[providers]]\nname = "x"\nkind = "telepathy"\n', "providers[0].kind"),
        ('[[providers]]\nname = "x"\nkind = "openai"\n', "providers[0].base_url"),
        ("[ingest]\nchunk_tokens = 1000\n", "ingest.chunk_tokens"),
    ],
)
def test_invalid_setting_names_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "custom.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={"ARCHIVIST_HOME": str(tmp_path)})
    assert key in str(info.value)
    assert str(cfg) in str(info.value)


def test_broken_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[retrieval\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={"ARCHIVIST_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", env={"ARCHIVIST_HOME": str(tmp_path)})


def test_local_model_choice_from_file_and_environment(tmp_path: Path) -> None:
    assert load_settings(env={"ARCHIVIST_HOME": str(tmp_path)}).local_model == "auto"
    (tmp_path / "archivist.toml").write_text('local_model = "off"\n')
    assert load_settings(env={"ARCHIVIST_HOME": str(tmp_path)}).local_model == "off"
    env = {"ARCHIVIST_HOME": str(tmp_path), "ARCHIVIST_LOCAL_MODEL": "model.gguf"}
    assert load_settings(env=env).local_model == "model.gguf"
    env["ARCHIVIST_MODELS_DIR"] = str(tmp_path / "m")
    assert load_settings(env=env).models_dir == (tmp_path / "m").resolve()
