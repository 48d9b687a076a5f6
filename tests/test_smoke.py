from tests.conftest import stored_files


def test_upload_text_round_trip(client, settings):
    r = client.post("/api/documents", files={"file": ("notes.txt", b"hello\nworld\n", "text/plain")})
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["kind"] == "text" and doc["n_sections"] == 1
    assert len(stored_files(settings)) == 1
