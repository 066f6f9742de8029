"""Annotator accounts: an Argilla user with role `annotator`, member of the project's workspace; created,
listed, removed, and given a new password.

Done through the REST API with the owner's key (the server CLI needs the server's own venv and takes
seconds per call). Generated passwords and API keys are returned once and stored nowhere by us. Only
annotators are managed here: errors name the user, and what they are when they are not an annotator.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import httpx

from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request_json
from annotation.dataset import workspace_id

SEPARATOR = (
    "--"  # <workspace>--<username>: an annotator's own workspace under blind overlap (annotation.blind)
)
# Letters, digits, - and _ ; not starting with - or _ (what Argilla's UI and URLs handle well).
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class AnnotatorCredentials:
    username: str
    password: str = field(repr=False)
    api_key: str = field(repr=False)
    user_id: str
    workspace: str


def create_annotator(
    http: httpx.Client,
    username: str,
    workspace: str,
    *,
    first_name: str | None = None,
    password: str | None = None,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> AnnotatorCredentials:
    """Create `username` as an annotator of `workspace`; `http` must carry an owner (or admin) key."""
    if not USERNAME.match(username):
        raise ValueError(
            f"annotator name {username!r}: letters, digits, '-' and '_' (not first), at most 100 characters"
        )
    if password is not None and len(password) < 8:
        raise ValueError("annotator password: at least 8 characters")
    ws = workspace_id(http, workspace)
    password = password or secrets.token_urlsafe(12)
    body = {
        "first_name": first_name or username,
        "username": username,
        "password": password,
        "role": "annotator",
    }
    try:
        user = request_json(http, "POST", "/api/v1/users", json=body, what="create user", backoff=backoff)
    except AnnotationSyncError as e:
        if e.status_code == 409:
            raise AnnotationSyncError(f"an Argilla user named {username!r} already exists", 409) from e
        raise
    request_json(
        http,
        "POST",
        f"/api/v1/workspaces/{ws}/users",
        json={"user_id": user["id"]},
        what=f"add {username} to workspace {workspace}",
        backoff=backoff,
    )
    return AnnotatorCredentials(username, password, user["api_key"], user["id"], workspace)


@dataclass(frozen=True)
class Member:
    """A user of the project's workspace, as Argilla knows them."""

    username: str
    role: str  # annotator | admin | owner
    user_id: str


def workspace_members(
    http: httpx.Client, workspace: str, *, backoff: Backoff = DEFAULT_BACKOFF
) -> list[Member]:
    """The users of `workspace`, by username."""
    ws = workspace_id(http, workspace)
    users = request_json(
        http, "GET", f"/api/v1/workspaces/{ws}/users", what=f"list users of {workspace}", backoff=backoff
    )["items"]
    return sorted((Member(u["username"], u["role"], u["id"]) for u in users), key=lambda m: m.username)


def find_annotator(http: httpx.Client, username: str, workspace: str) -> Member:
    """The annotator `username` of `workspace`; errors name the user and what they are instead."""
    users = request_json(http, "GET", "/api/v1/users", what="list users")["items"]
    user = next((u for u in users if u["username"] == username), None)
    if user is None:
        members = ", ".join(m.username for m in workspace_members(http, workspace) if m.role == "annotator")
        raise AnnotationSyncError(
            f"no Argilla user named {username!r} (annotators of workspace {workspace!r}: {members or 'none'})",
            404,
        )
    if user["role"] != "annotator":
        raise AnnotationSyncError(
            f"{username!r} is the Argilla {user['role']}, not an annotator: `pvar-loop annotators` manages "
            "annotator accounts only (the local stack's owner password is in its stack.json)",
            403,
        )
    return Member(user["username"], user["role"], user["id"])


def user_workspaces(http: httpx.Client, member: Member) -> list[str]:
    data = request_json(
        http, "GET", f"/api/v1/users/{member.user_id}/workspaces", what=f"workspaces of {member.username}"
    )
    return sorted(w["name"] for w in data["items"])


def remove_annotator(http: httpx.Client, member: Member, workspace: str) -> bool:
    """Take `member` out of `workspace`. An account in no other workspace is deleted (its API key stops
    working), and Argilla deletes its responses with it; one that other workspaces share only leaves ours
    (its responses stay). The annotator's own workspace of blind overlap counts as ours. Returns whether the
    account was deleted."""
    ours = {workspace, f"{workspace}{SEPARATOR}{member.username}"}
    mine = user_workspaces(http, member)
    if any(w not in ours for w in mine):
        for name in sorted(ours & set(mine)):
            ws = workspace_id(http, name)
            request_json(
                http,
                "DELETE",
                f"/api/v1/workspaces/{ws}/users/{member.user_id}",
                what=f"remove {member.username} from workspace {name}",
            )
        return False
    request_json(http, "DELETE", f"/api/v1/users/{member.user_id}", what=f"delete user {member.username}")
    return True


def reset_password(http: httpx.Client, member: Member) -> str:
    """Give `member` a new random password and return it: the caller shows it once; nobody stores it (Argilla
    keeps only its hash)."""
    password = secrets.token_urlsafe(12)
    request_json(
        http,
        "PATCH",
        f"/api/v1/users/{member.user_id}",
        json={"password": password},
        what=f"reset the password of {member.username}",
    )
    return password
