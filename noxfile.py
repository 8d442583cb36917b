"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typing`.

`nox -s tests` includes the Spark engine tests (pyspark from PyPI; they skip with a reason
when no Java runtime is found); `nox -s tests -- -m "not spark"` leaves them out."""

import nox

nox.options.sessions = ["tests", "lint", "typing"]


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test,spark]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "tokentrail", "tests", "bench", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".", "mypy", "pandas-stubs")
    session.run("mypy", "tokentrail")
