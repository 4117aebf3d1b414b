"""The tables of AWS's durable-execution contract (durable/invoke, server/aws.py): registered
functions, execution names, checkpoint tokens, callback heartbeats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from durable.model import RunInfo
from durable.store.rows import Table, marks, run_columns, run_row


class Contract(Table):
    """Functions, executions, checkpoint tokens and heartbeats."""

    def put_function(self, name: str, url: str | None, handler: str | None,
                     execution_timeout: float | None, retry_deadline: float | None,
                     concurrency: int | None, now: float, lambda_function: str | None = None,
                     lambda_qualifier: str | None = None,
                     lambda_region: str | None = None) -> None:
        """Register a function (an HTTP endpoint, an in-process handler or an AWS Lambda
        function), or replace it."""
        self._exec(
            "INSERT INTO functions (name, url, handler, execution_timeout, retry_deadline,"
            " concurrency, updated_at, lambda_function, lambda_qualifier, lambda_region)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO"
            " UPDATE SET url = excluded.url, handler = excluded.handler,"
            " execution_timeout = excluded.execution_timeout,"
            " retry_deadline = excluded.retry_deadline, concurrency = excluded.concurrency,"
            " updated_at = excluded.updated_at, lambda_function = excluded.lambda_function,"
            " lambda_qualifier = excluded.lambda_qualifier,"
            " lambda_region = excluded.lambda_region",
            (name, url, handler, execution_timeout, retry_deadline, concurrency, now,
             lambda_function, lambda_qualifier, lambda_region))
        self.notify()  # servers reload their functions

    def functions(self) -> list[tuple[str, str | None, str | None, float | None, float | None,
                                      int | None, str | None, str | None, str | None]]:
        """Every registered function: (name, url, handler, execution timeout, retry deadline,
        concurrency, Lambda function, qualifier, region)."""
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in self._rows(
            "SELECT name, url, handler, execution_timeout, retry_deadline, concurrency,"
            " lambda_function, lambda_qualifier, lambda_region FROM functions ORDER BY name")]

    def delete_function(self, name: str) -> bool:
        return self._one("DELETE FROM functions WHERE name = ? RETURNING name",
                         (name,)) is not None

    def insert_execution(self, run_id: str, function: str, name: str) -> bool:
        """Name a run of `function`; False if that function already has an execution so named."""
        return self._one(
            "INSERT INTO executions (run_id, function_name, name) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING run_id", (run_id, function, name)) is not None

    def execution_named(self, function: str, name: str) -> str | None:
        row = self._one("SELECT run_id FROM executions WHERE function_name = ? AND name = ?",
                        (function, name))
        return None if row is None else str(row[0])

    def execution_name(self, run_id: str) -> str | None:
        row = self._one("SELECT name FROM executions WHERE run_id = ?", (run_id,))
        return None if row is None else str(row[0])

    def list_executions(self, function: str, statuses: Sequence[str], name: str | None,
                        after: float | None, before: float | None, newest_first: bool,
                        limit: int, offset: int) -> list[tuple[RunInfo, str | None]]:
        """Runs of `function` (started by Invoke or otherwise) with their execution names."""
        clauses: list[str] = ["r.workflow = ?"]
        params: list[object] = [function]
        if statuses:
            clauses.append(f"r.status IN ({marks(statuses)})")
            params.extend(statuses)
        if name is not None:
            clauses.append("coalesce(e.name, r.run_id) = ?")
            params.append(name)
        if after is not None:
            clauses.append("r.created_at > ?")
            params.append(after)
        if before is not None:
            clauses.append("r.created_at < ?")
            params.append(before)
        order = "DESC" if newest_first else "ASC"
        columns = run_columns("r.", preview=0)  # an execution summary shows no payload
        rows = self._rows(
            f"SELECT {columns}, e.name FROM runs r LEFT JOIN executions e ON e.run_id = r.run_id"
            f" WHERE {' AND '.join(clauses)} ORDER BY r.created_at {order}, r.run_id {order}"
            " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [(run_row(r), r[-1]) for r in rows]

    def get_checkpoint_token(self, run_id: str) -> CheckpointTokenRow | None:
        row = self._one("SELECT run_id, fence, nonce, watermark, client_token, prior_nonce,"
                        " response FROM checkpoint_tokens WHERE run_id = ?", (run_id,))
        return None if row is None else CheckpointTokenRow(*row)

    def put_checkpoint_token(self, row: CheckpointTokenRow) -> None:
        self._exec(
            "INSERT INTO checkpoint_tokens (run_id, fence, nonce, watermark, client_token,"
            " prior_nonce, response) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE"
            " SET fence = excluded.fence, nonce = excluded.nonce,"
            " watermark = excluded.watermark, client_token = excluded.client_token,"
            " prior_nonce = excluded.prior_nonce, response = excluded.response",
            (row.run_id, row.fence, row.nonce, row.watermark, row.client_token,
             row.prior_nonce, row.response))

    def history_watermark(self, run_id: str) -> int:
        """The id of the run's newest history event (0: none): what a reader has seen."""
        return int(self._one("SELECT coalesce(max(id), 0) FROM history WHERE run_id = ?",
                             (run_id,))[0])

    def operations_changed_since(self, run_id: str, watermark: int) -> list[str]:
        """Ids of the operations a history event after `watermark` is about."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT op_id FROM history WHERE run_id = ? AND id > ?"
            " AND op_id IS NOT NULL", (run_id, watermark))]

    def put_heartbeat(self, callback_id: str, run_id: str, every: float,
                      deadline: float | None) -> None:
        self._exec("INSERT INTO callback_heartbeats (callback_id, run_id, every_seconds, deadline)"
                   " VALUES (?, ?, ?, ?)", (callback_id, run_id, every, deadline))

    def get_heartbeat(self, callback_id: str) -> tuple[float, float | None] | None:
        """(seconds allowed between heartbeats, the callback's own deadline) if it has one."""
        row = self._one("SELECT every_seconds, deadline FROM callback_heartbeats"
                        " WHERE callback_id = ?", (callback_id,))
        return None if row is None else (float(row[0]), row[1])


@dataclass(frozen=True, slots=True)
class CheckpointTokenRow:
    """The checkpoint token of a run's invocation in flight, as an HTTP function knows it.

    `fence` is the run's lease token of that invocation; `nonce` rotates with every accepted
    checkpoint, so only the newest token is valid; `watermark` is the history id up to which the
    function has been told about changed operations. `client_token`, `prior_nonce` and
    `response` replay the last accepted checkpoint when the function retries it.
    """

    run_id: str
    fence: int
    nonce: str
    watermark: int
    client_token: str | None = None
    prior_nonce: str | None = None
    response: str | None = None
