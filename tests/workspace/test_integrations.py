"""integrations/*.yaml: a platform's payload mapped to member and event records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nurture.errors import WorkspaceValidationError
from nurture.workspace import load_workspace
from nurture.workspace.integrations import load_integrations, map_payload, resolve_path

CONTENT = Path(__file__).resolve().parents[2] / "content"

USER = {
    "user": {
        "id": 42,
        "username": "ada",
        "name": "Ada",
        "email": "ada@example.org",
        "created_at": "2026-11-01T08:00:00.000Z",
    }
}
POST = {
    "post": {
        "id": 9001,
        "user_id": 42,
        "created_at": "2026-11-01T08:30:00.000Z",
        "topic_title": "Hello",
        "raw": "First lines",
        "topic_id": 7,
    }
}


def test_paths_lead_to_values_or_nowhere():
    payload = {"a": {"b": [{"c": 1}, {"c": None}]}}
    assert resolve_path(payload, "$.a.b[0].c") == 1
    assert resolve_path(payload, "$.a.b[5].c") is None
    assert resolve_path(payload, "$.a.x") is None
    assert resolve_path(payload, "$") == payload


def test_the_demo_discourse_mapping():
    discourse = load_integrations(CONTENT)["discourse"]
    joined = map_payload(discourse, USER, {"X-Discourse-Event": "user_created"})
    assert joined.rules == ["user_created"] and joined.events == []
    assert joined.members == [
        {
            "external_id": "discourse-42",
            "email": "ada@example.org",
            "first_name": "Ada",
            "joined_at": "2026-11-01T08:00:00.000Z",
            "discourse_username": "ada",
        }
    ]
    posted = map_payload(discourse, POST, {"x-discourse-event": "post_created"})
    assert posted.events == [
        {
            "member": "discourse-42",
            "type": "post",
            "occurred_at": "2026-11-01T08:30:00.000Z",
            "idempotency_key": "discourse-post-9001",
            "properties": {"title": "Hello", "excerpt": "First lines", "topic_id": 7},
        }
    ]
    # A path that leads nowhere leaves the field out; another event kind matches no rule.
    no_name = map_payload(discourse, {"user": {"id": 1}}, {"X-Discourse-Event": "user_created"})
    assert no_name.members == [{"external_id": "discourse-1"}]
    assert map_payload(discourse, USER, {"X-Discourse-Event": "topic_created"}).rules == []


def test_the_workspace_loads_its_integrations():
    assert [i.key for i in load_workspace(CONTENT).integrations] == ["discourse"]


def test_a_bad_mapping_is_named_with_file_and_line(tmp_path: Path):
    shutil.copytree(CONTENT / "integrations", tmp_path / "integrations")
    (tmp_path / "integrations" / "forum.yaml").write_text(
        "signature:\n  header: X-Sig\n  secret_env: lower-case\n"
        "rules:\n  - name: r\n    event:\n      member: $.who\n      type: post\n"
        "      occurred_at: $..when\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkspaceValidationError) as raised:
        load_integrations(tmp_path)
    text = str(raised.value)
    assert "forum.yaml" in text and "secret_env" in text and "$..when" in text
