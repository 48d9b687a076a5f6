"""Real files nobody on the team wrote, read from public repositories' snapshots (fetched with the search
tool's `fetch` into /work/.mirror/OWNER+NAME/repo, a bare git directory), never copied into this
repository. A test that needs one is skipped, with the snapshot's name, where the snapshot is absent.

The files used (repository, commit or HEAD, path):
- jdum/odfdo (Apache-2.0) tests/samples/*.odt: LibreOffice documents of odfdo's own test suite
- joshy/striprtf (BSD-3-Clause) tests/rtf/*.rtf: RTF files from striprtf's issue reporters (Word, TextEdit,
  a recipe costing, a Polish privacy notice, an Austrian court decision)
- laws-africa/indigo (LGPL-3.0) at 26f2550, indigo_api/tests/xslt_fixtures/act_text-general-input.xml:
  the City of Cape Town Events By-law 2009 as amended to 2016, in Akoma Ntoso 3.0 (openbylaws.org.za)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

MIRRORS = Path("/work/.mirror")
CAPE_TOWN_EVENTS = ("laws-africa+indigo", "26f255092f95f8c1d0ef126f4d26e6e63a13ad5e",
                    "indigo_api/tests/xslt_fixtures/act_text-general-input.xml")


def mirrored(repo: str, path: str, commit: str = "HEAD") -> bytes:
    """The bytes of `path` at `commit` in the snapshot of `repo` ("owner+name"); skips the test without it."""
    git_dir = MIRRORS / repo / "repo"
    if not git_dir.exists():
        pytest.skip(f"the snapshot of {repo.replace('+', '/')} is not on this machine (fetch it to run this test)")
    done = subprocess.run(["git", "-C", str(git_dir), "show", f"{commit}:{path}"], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"{path} is not in the snapshot of {repo.replace('+', '/')} ({done.stderr.decode()[:200]})")
    return done.stdout
