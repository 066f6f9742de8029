"""Create annotator accounts: an Argilla user with role `annotator`, member of the project's workspace.

Done through the REST API with the owner's key (the server CLI needs the server's own venv and takes
seconds per call). The generated password and API key are returned once and stored nowhere by us.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

import httpx

from annotation.api import DEFAULT_BACKOFF, AnnotationSyncError, Backoff, request_json
from annotation.dataset import workspace_id

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
