"""Script-free OpenSearch engine for Argilla 2.8 plus a launcher for its server and rq worker.

The local stack uses osmem (an in-memory OpenSearch emulator) which rejects Painless scripts. Stock Argilla
uses scripts in exactly three engine methods; this subclass does them as an optimistic read-modify-write
of the record document instead (if_seq_no/if_primary_term, retried on conflict): Argilla itself is unpatched.

Run ONLY with the Argilla server's own venv (it imports argilla_server, whose pins clash with the ML stack):

    <argilla-venv>/bin/python -P annotation/stack/argilla_engine.py server --host 127.0.0.1 --port 6900
    <argilla-venv>/bin/python -P annotation/stack/argilla_engine.py worker
    <argilla-venv>/bin/python -P annotation/stack/argilla_engine.py reindex

with ARGILLA_SEARCH_ENGINE=opensearch-noscript. Self-contained on purpose: no imports from this project.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from argilla_server.models import Response, Suggestion
from argilla_server.search_engine import SearchEngine
from argilla_server.search_engine.commons import es_index_name_for_dataset
from argilla_server.search_engine.opensearch import OpenSearchEngine
from opensearchpy.exceptions import ConflictError

ENGINE_NAME = "opensearch-noscript"
_LOGGER = logging.getLogger("argilla_engine")


def _jsonable(value: Any) -> Any:
    """UUIDs and str-enums as the plain JSON values the stored document holds (ids compare as strings)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


@SearchEngine.register(engine_name=ENGINE_NAME)
@dataclasses.dataclass
class ScriptFreeOpenSearchEngine(OpenSearchEngine):
    """OpenSearchEngine whose response/suggestion updates need no server-side scripting."""

    max_conflict_retries: int = 20

    async def _rewrite_document(self, index_name: str, doc_id: str, edit: Callable[[dict], None]) -> None:
        """Fetch the document, apply `edit` to its _source, write it back only if nobody wrote in between."""
        for attempt in range(self.max_conflict_retries):
            doc = await self.client.get(index=index_name, id=doc_id)
            source = doc["_source"]
            edit(source)
            try:
                await self.client.index(
                    index=index_name,
                    id=doc_id,
                    body=source,
                    if_seq_no=doc["_seq_no"],
                    if_primary_term=doc["_primary_term"],
                    refresh=True,
                )
                return
            except ConflictError:
                # Another request updated the record since our read: re-read and re-apply.
                _LOGGER.info("write conflict on %s/%s, retry %d", index_name, doc_id, attempt + 1)
                await asyncio.sleep(min(0.01 * 2**attempt, 0.5))
        raise RuntimeError(
            f"search document {doc_id} in {index_name}: "
            f"still conflicting after {self.max_conflict_retries} retries"
        )

    async def update_record_response(self, response: Response) -> None:
        record = response.record
        es_response = _jsonable(self._map_record_response_to_es(response))

        def edit(source: dict) -> None:
            kept = [r for r in source.get("responses") or [] if r.get("id") != es_response["id"]]
            source["responses"] = [*kept, es_response]

        await self._rewrite_document(es_index_name_for_dataset(record.dataset), str(record.id), edit)

    async def delete_record_response(self, response: Response) -> None:
        record = response.record
        response_id = str(response.id)

        def edit(source: dict) -> None:
            if source.get("responses") is not None:
                source["responses"] = [r for r in source["responses"] if r.get("id") != response_id]

        await self._rewrite_document(es_index_name_for_dataset(record.dataset), str(record.id), edit)

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        question_name = suggestion.question.name

        def edit(source: dict) -> None:
            (source.get("suggestions") or {}).pop(question_name, None)

        await self._rewrite_document(
            es_index_name_for_dataset(suggestion.record.dataset), str(suggestion.record_id), edit
        )


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(name)s: %(message)s"))
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)


def run_server(host: str, port: int, access_log: bool) -> None:
    """Serve argilla_server:app in this process, so the engine registered above is the one it finds."""
    import uvicorn

    _log_to_stderr()
    logging.getLogger("opensearch").setLevel(logging.ERROR)  # stock does this only for engine "opensearch"
    uvicorn.run("argilla_server:app", host=host, port=port, access_log=access_log)


def run_worker(queues: list[str]) -> None:
    """One rq worker (jobs run in forked work-horses that inherit the registration)."""
    from argilla_server.jobs.queues import REDIS_CONNECTION
    from rq import Worker

    _log_to_stderr()
    Worker(queues, connection=REDIS_CONNECTION).work(logging_level="INFO")


def create_owner(username: str, workspace: str) -> None:
    """The owner user, member of `workspace` (created if missing). Its password and API key come from the
    environment: the stock `database users create` takes them as arguments (visible in `ps`) and prints the
    key to its log. An existing owner is kept."""
    from argilla_server.cli.database.users.utils import get_or_new_workspace
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    password = os.environ.pop("PVAR_LOOP_OWNER_PASSWORD")
    api_key = os.environ.pop("PVAR_LOOP_OWNER_API_KEY")

    async def create() -> str:
        async with AsyncSessionLocal() as session:
            if await accounts.get_user_by_username(session, username):
                return f"owner {username!r} exists; kept"
            await User.create(
                session,
                first_name="Owner",
                username=username,
                role=UserRole.owner,
                password_hash=accounts.hash_password(password),
                api_key=api_key,
                workspaces=[await get_or_new_workspace(session, workspace)],
            )
            return f"owner {username!r} created, member of workspace {workspace!r}"

    print(asyncio.run(create()), flush=True)


def reindex() -> None:
    """Rebuild the search index of every published dataset from Argilla's database (records, responses,
    suggestions, vectors), with Argilla's own Reindexer (what `argilla_server search-engine reindex` runs).
    osmem keeps its index in memory: a restarted stack needs this before the UI and the API see records again.
    Drafts have no index (publishing creates it), so they are left alone."""
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.enums import DatasetStatus
    from argilla_server.models import Dataset
    from argilla_server.search_engine import get_search_engine
    from sqlalchemy import select

    async def run() -> tuple[int, int]:
        datasets = records = 0
        async with AsyncSessionLocal() as db:
            ids = (await db.scalars(select(Dataset.id).filter_by(status=DatasetStatus.ready))).all()
            async for engine in get_search_engine():
                for dataset_id in ids:
                    dataset = await Reindexer.reindex_dataset(db, engine, dataset_id)
                    async for batch in Reindexer.reindex_dataset_records(db, engine, dataset):
                        records += len(batch)
                    datasets += 1
        return datasets, records

    datasets, records = asyncio.run(run())
    print(f"reindexed {records} records of {datasets} datasets", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the Argilla API + UI with the script-free engine")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=6900)
    server.add_argument("--no-access-log", action="store_true")
    worker = sub.add_parser("worker", help="run the Argilla background-job worker")
    worker.add_argument("--queue", action="append", dest="queues", help="queue name (repeatable)")
    owner = sub.add_parser("create-owner", help="create the owner (secrets from the environment)")
    owner.add_argument("--username", required=True)
    owner.add_argument("--workspace", required=True)
    sub.add_parser("reindex", help="rebuild the search index of every published dataset from the database")
    args = parser.parse_args(argv)
    if args.command == "server":
        run_server(args.host, args.port, access_log=not args.no_access_log)
    elif args.command == "create-owner":
        create_owner(args.username, args.workspace)
    elif args.command == "reindex":
        reindex()
    else:
        # Argilla's own worker listens on these two queues.
        run_worker(args.queues or ["default", "high"])


if __name__ == "__main__":
    main()
