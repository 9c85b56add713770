"""``archivist admin init`` and ``archivist collection ...``, end to end, in real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer

ARCHIVIST = [sys.executable, "-m", "app.cli"]


def run(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARCHIVIST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("ARCHIVIST_REDIS_URL", None)
    env["ARCHIVIST_LOCAL_MODEL"] = "off"
    if url:
        env["ARCHIVIST_DATABASE_URL"] = url
    else:
        env.pop("ARCHIVIST_DATABASE_URL", None)
    return subprocess.run(
        [*ARCHIVIST, *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )


@pytest.mark.postgres
def test_team_set_up_grant_list_and_revoke_from_the_command_line(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.new_database("cli_team")
    suffix = uuid.uuid4().hex[:8]
    alice, bob = f"alice_{suffix}", f"bob_{suffix}"
    for role in (alice, bob):
        postgres_server.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
    url_a = url.replace("postgres@", f"{alice}@", 1)
    url_b = url.replace("postgres@", f"{bob}@", 1)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text("The morning ferry to Kettle Island leaves at 07:15.\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "archivist.toml").write_text("[ingest]\nembed = false\n")

    init = run(tmp_path / "admin", url, "admin", "init", "--member", alice, "--member", bob)
    assert init.returncode == 0, init.stderr
    assert "team database ready" in init.stdout
    again = run(tmp_path / "admin", url, "admin", "init", "--member", alice)  # harmless
    assert again.returncode == 0, again.stderr

    ingest = run(tmp_path / "a", url_a, "ingest", str(docs), "--collection", "ops", "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["summary"]["added"] == 1

    assert json.loads(run(tmp_path / "b", url_b, "collection", "list", "--json").stdout) == []
    granted = run(tmp_path / "a", url_a, "collection", "grant", "ops", bob)
    assert granted.returncode == 0 and f"{bob} may now read ops" in granted.stdout
    [ops] = json.loads(run(tmp_path / "b", url_b, "collection", "list", "--json").stdout)
    assert (ops["name"], ops["owner"], ops["mine"], ops["documents"]) == ("ops", alice, False, 1)

    not_owner = run(tmp_path / "b", url_b, "collection", "revoke", "ops", bob)
    assert not_owner.returncode == 2 and "only its owner" in not_owner.stderr
    no_role = run(tmp_path / "a", url_a, "collection", "grant", "ops", "nobody_" + suffix)
    assert no_role.returncode == 2 and "no PostgreSQL role" in no_role.stderr
    revoked = run(tmp_path / "a", url_a, "collection", "revoke", "ops", bob)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(run(tmp_path / "b", url_b, "collection", "list", "--json").stdout) == []


def test_collections_on_sqlite_are_a_usage_error(tmp_path: Path) -> None:
    listed = run(tmp_path / "solo", "", "collection", "list")
    assert listed.returncode == 2 and "PostgreSQL" in listed.stderr
    init = run(tmp_path / "solo", "", "admin", "init")
    assert init.returncode == 2 and "PostgreSQL" in init.stderr
