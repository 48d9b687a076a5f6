"""Every setting is documented, and settings come from the environment with the DOCQA_ prefix."""

from pathlib import Path

from docqa.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_in_the_readme():
    text = README.read_text()
    missing = [f"DOCQA_{name.upper()}" for name in Settings.model_fields if f"`DOCQA_{name.upper()}`" not in text]
    assert missing == []


def test_every_setting_has_help():
    assert all(field.description for field in Settings.model_fields.values())


def test_environment_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCQA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DOCQA_MAX_UPLOAD_BYTES", "1234")
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.max_upload_bytes == 1234
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'docqa.sqlite3'}"
