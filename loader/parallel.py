"""One view loaded by several processes (``featurestore load --processes N``): each child
process reads, validates and writes one :class:`~loader.warehouse.Partition` of the view's
entities; the parent lets them write only once every part passed the gate, and keeps the
bookkeeping (watermark, load record) itself, after all of them succeeded.

The protocol, per child (a pipe to the parent):

1. the child runs its part up to the gate and sends what it found (``validated``);
2. the parent answers ``True`` (write) only if every child validated and every part passed,
   else ``False`` (the child stops; nothing of the view is written);
3. the child writes and sends what it wrote (``done``).

A child that raises sends its error (type and message) instead; a child that dies (killed,
out of memory) is noticed by its closed pipe and exit code. Either fails the view with that
error; what other parts wrote stays (every write is newer-wins, so a re-run converges) and
the watermark does not move.

Children are forked (Linux): they inherit the loaded modules (great_expectations takes
seconds to import) and the part function, which opens its own warehouse connection and
store (a forked connection is never shared).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final, TypeVar

from featurestore.online.store import StoreError, StoreNotInitialized, StoreUnavailable
from loader.errors import LoaderError, WarehouseError

if TYPE_CHECKING:  # (the CLI imports MAX_PROCESSES: no pyarrow at its start)
    from loader.warehouse import Partition

__all__ = ["MAX_PROCESSES", "Proceed", "run_parts"]

#: processes of one load at most (a typo like 1000 would fork a thousand loaders)
MAX_PROCESSES: Final = 64

T = TypeVar("T")
U = TypeVar("U")

#: what a part calls between its gate and its writes: sends what it validated, returns
#: whether to write
Proceed = Callable[[Any], bool]

#: errors re-raised in the parent as their own type (the exit code depends on it)
_KINDS: Final[dict[str, type[Exception]]] = {
    "StoreUnavailable": StoreUnavailable,
    "StoreNotInitialized": StoreNotInitialized,
    "StoreError": StoreError,
    "WarehouseError": WarehouseError,
    "LoaderError": LoaderError,
}


def _child(
    conn: Connection, part: Callable[[Partition, Proceed], Any], partition: Partition
) -> None:
    def proceed(validated: Any) -> bool:
        conn.send(("validated", validated))
        return bool(conn.recv())

    try:
        conn.send(("done", part(partition, proceed)))
    except BaseException as exc:  # sent to the parent, which fails the view with it
        kind = next((k for k, cls in _KINDS.items() if type(exc) is cls), type(exc).__name__)
        conn.send(("error", kind, str(exc)))
    finally:
        conn.close()


def _error(partition: Partition, kind: str, message: str) -> Exception:
    cls = _KINDS.get(kind)
    if cls is not None:
        return cls(message)
    return LoaderError(
        f"loader process {partition.index + 1} of {partition.count}: {kind}: {message}"
    )


def run_parts(
    count: int,
    part: Callable[[Partition, Proceed], U],
    accept: Callable[[Sequence[T]], bool],
) -> tuple[list[T], list[U]]:
    """Run ``part`` for each of ``count`` partitions in a forked child process. Each part
    calls ``proceed(validated)`` once, after its gate; once every child has, ``accept`` sees
    the ``validated`` values in partition order and decides whether all may write. Returns
    (the validated values, what each part returned); the second list is empty if
    ``accept`` refused. Raises the error of the first child that failed (its type kept for
    store and loader errors), or a LoaderError for a child that died."""
    from loader.warehouse import Partition

    if not 1 <= count <= MAX_PROCESSES:
        raise LoaderError(f"processes must be between 1 and {MAX_PROCESSES}, got {count}")
    context = multiprocessing.get_context("fork")
    pipes: list[Connection] = []
    children = []
    for index in range(count):
        parent_end, child_end = context.Pipe()
        child = context.Process(
            target=_child,
            args=(child_end, part, Partition(index, count)),
            name=f"featurestore-load-{index + 1}-of-{count}",
            daemon=True,
        )
        child.start()
        child_end.close()
        pipes.append(parent_end)
        children.append(child)
    error: Exception | None = None

    def receive(index: int, expected: str) -> Any:
        nonlocal error
        try:
            message = pipes[index].recv()
        except EOFError:
            children[index].join()
            message = ("error", "died", f"exited with code {children[index].exitcode}")
        if message[0] == "error":
            if error is None:
                error = _error(Partition(index, count), message[1], message[2])
            return None
        assert message[0] == expected, message
        return message[1]

    try:
        validated = [receive(index, "validated") for index in range(count)]
        go = error is None and accept(validated)
        for pipe in pipes:
            with contextlib.suppress(OSError):  # a child that failed has closed its end
                pipe.send(go)
        done = [receive(index, "done") for index in range(count)]
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()
        for pipe in pipes:
            pipe.close()
    if error is not None:
        raise error
    return validated, done if go else []
