"""The results of a multi-statement sent on a PyMySQL connection, read lean.

A batch (session.py) is one multi-statement whose statements answer with OK packets, and at
most one result set (a SELECT of server variables). Through a PyMySQL cursor, each answer
costs a result object, an OK-packet wrapper whose every attribute read goes through
`__getattr__`, and the cursor's bookkeeping: about a tenth of a purchase's CPU in the server
process went to reading its seven OK packets that way.

Here each OK packet is parsed straight from the packet, and a result set is handed to
PyMySQL's own reader. This uses PyMySQL's private `_execute_command`, `_read_packet` and
`MySQLResult._read_result_packet`, as the version the lock files pin has them
(requirements/*.txt); the integration tests send every batch shape through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pymysql.connections import MySQLResult
from pymysql.constants import COMMAND, SERVER_STATUS

_MORE_RESULTS = SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS


def results(dbapi: Any, sql: str) -> Iterator[tuple[int, int, tuple | None]]:
    """Send the multi-statement `sql` on `dbapi` (a PyMySQL connection, with
    CLIENT.MULTI_STATEMENTS), and yield each statement's affected rows, insert id, and first
    row (None for a statement without rows), in order. A statement that fails raises its
    error when its turn comes; the server runs none after it, so the connection is then
    ready for the next command."""
    dbapi._execute_command(COMMAND.COM_QUERY, sql.encode(dbapi.encoding))
    # The connection holds no result of its own: none is left for its next command to drain.
    dbapi._result = None
    more = True
    while more:
        packet = dbapi._read_packet()  # raises the statement's error
        if packet.is_ok_packet():
            packet.advance(1)
            affected = packet.read_length_encoded_integer()
            insert_id = packet.read_length_encoded_integer()
            status = dbapi.server_status = packet.read_uint16()  # as PyMySQL tracks it
            more = bool(status & _MORE_RESULTS)
            yield affected, insert_id, None
        else:
            result: Any = MySQLResult(dbapi)
            result._read_result_packet(packet)
            more = bool(result.has_next)
            yield result.affected_rows, 0, result.rows[0] if result.rows else None
