"""Parse students' cell sources from the grader's worker threads, one parse at a time.

CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state; when two
threads build Python AST objects at once (a thread switch inside ``ast.parse``, e.g. while a
finalizer runs), a parse fails with ``SystemError: AST constructor recursion depth mismatch``
(python/cpython#106905). The grader prepares submissions in a thread pool, so every parse and
symbol table in ``autograder`` goes through the lock here. A source that is not Python in any
way (a syntax error, a null byte) raises ``SyntaxError``; a source the parser gives up on
(nesting too deep, out of memory) raises :class:`Unparseable`, a ``SyntaxError`` the
grader can tell apart: the kernel may still run it (a cell can raise the recursion limit).

Used in: grading (cell skipping, the course-use rule, the hidden tests' bytecode),
similarity.
"""

from __future__ import annotations

import ast
import symtable
import threading

_LOCK = threading.Lock()


class Unparseable(SyntaxError):
    """The parser gave up on a source (nesting too deep, out of memory): not proof it is not Python."""


def parse(source: str) -> ast.Module:
    """Parse ``source`` as a module, holding the process-wide parse lock.

    Args:
        source: Python source text (one cell).

    Returns:
        The module's AST.

    Raises:
        SyntaxError: when ``source`` is not Python (a null byte included).
        Unparseable: when the parser gives up (``RecursionError``, ``MemoryError``).
    """
    return _locked(ast.parse, source)


def symbol_table(source: str) -> symtable.SymbolTable:
    """Return the top-level symbol table of ``source``, holding the parse lock.

    Args:
        source: Python source text (one cell).

    Returns:
        The module's :class:`symtable.SymbolTable`.

    Raises:
        SyntaxError: as :func:`parse`.
    """
    return _locked(lambda s: symtable.symtable(s, "<cell>", "exec"), source)


def python_source(source: str) -> str:
    """Return ``source`` as the Python IPython runs: magics (``%...``, ``!...``) rewritten.

    A cell that parses is returned as it is; otherwise IPython's own input transformer turns
    ``%matplotlib inline`` into ``get_ipython().run_line_magic(...)`` and so on, so that a
    magic line does not hide the rest of the cell from the grader's reading.
    """
    try:
        parse(source)
        return source
    except Unparseable:
        return source
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        with _LOCK:
            try:
                return TransformerManager().transform_cell(source)
            except Exception:  # noqa: BLE001 - IPython's transformer on any text
                return source


def compile_code(source: str | ast.Module, filename: str) -> object:
    """Compile ``source`` (text or a module's AST) in ``exec`` mode, holding the parse lock.

    Raises:
        SyntaxError: as :func:`parse`.
    """
    return _locked(lambda s: compile(s, filename, "exec"), source)


def _locked(fn, source):  # noqa: ANN001, ANN202
    with _LOCK:
        try:
            return fn(source)
        except SyntaxError:
            raise
        except ValueError as e:  # null bytes
            raise SyntaxError(f"not Python: {e}") from None
        except (RecursionError, MemoryError) as e:
            raise Unparseable(f"too deep for the parser: {type(e).__name__}: {e}") from None
