"""A failed ``feast`` command is reported by its exception, not by a log line printed after it."""

from shoprank.features.store import last_error

TRACEBACK = """\
Traceback (most recent call last):
  File "/venv/bin/feast", line 8, in <module>
psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "feature_view_version_history_pkey"
The above exception was the direct cause of the following exception:
sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint
INFO:py4j.clientserver:Closing down clientserver connection
"""


def test_the_last_exception_line_is_the_reason_not_a_log_line_after_it():
    assert last_error(TRACEBACK) == (
        "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key value violates unique constraint"
    )


def test_without_an_exception_line_the_last_line_is_the_reason():
    assert last_error("Usage: feast [OPTIONS]\nError: No such command 'aply'.\n") == "Error: No such command 'aply'."
    assert last_error("") == "no output"
