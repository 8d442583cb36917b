"""Starting Spark: pyspark is an optional extra and needs Java, so every way it can be missing
becomes one usage error that says what to install, and a Spark error becomes its first useful line."""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

from tokentrail.errors import CaseError, UsageError
from tokentrail.redact import redact_text

DEFAULT_MASTER = "local[*]"
INSTALL_HINT = "pip install 'tokentrail[spark]'"


class SparkUnavailable(UsageError):
    """pyspark or Java is missing, or Spark cannot start (exit 2)."""


class SparkQueryError(CaseError):
    """A statement failed on Spark."""


def _pyspark() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pyspark
            import pyspark.sql  # noqa: F401
    except ImportError:
        raise SparkUnavailable(f"the Spark engine needs pyspark: {INSTALL_HINT} "
                               "(and a Java 17+ runtime, e.g. apt-get install openjdk-17-jre-headless)"
                               ) from None
    return pyspark


def java_runtime() -> str | None:
    """The java executable Spark would start, or None."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


def spark_available() -> str | None:
    """None when the Spark engine can run here (local mode), else why not."""
    try:
        _pyspark()
    except SparkUnavailable as exc:
        return str(exc)
    if java_runtime() is None:
        return "no Java runtime (java on PATH or $JAVA_HOME): apt-get install openjdk-17-jre-headless"
    return None


def build_session(master: str = DEFAULT_MASTER, conf: dict[str, str] | None = None,
                  app_name: str = "tokentrail") -> Any:
    """A SparkSession configured the way the engine needs it (UTC, lenient casts like DuckDB's
    TRY_CAST, partition values kept as text, no console progress)."""
    _pyspark()
    from pyspark.sql import SparkSession

    local = master.startswith("local")
    if local and java_runtime() is None:
        raise SparkUnavailable("Spark needs a Java runtime (17 or newer): apt-get install "
                               "openjdk-17-jre-headless, or set JAVA_HOME")
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "OFF",  # errors come back as exceptions, once
    }
    if local:
        settings.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "8"})
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spark = builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up errors have no common base class
        raise SparkUnavailable(f"cannot start Spark ({master}): {_why(exc)}") from None
    for key, value in settings.items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)  # a session that already existed keeps its own otherwise
    try:  # Spark logs every failed query as JSON on stderr, besides raising it
        jvm: Any = spark.sparkContext._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            "SQLQueryContextLogger", jvm.org.apache.logging.log4j.Level.OFF)
    except Exception:  # noqa: S110 - cosmetic only
        pass
    return spark


def _why(exc: BaseException) -> str:
    return redact_text(_first_line(exc), strict=False)


def _first_line(exc: BaseException) -> str:
    """The useful line of a (Py4J-wrapped) Spark error."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        for ln in lines[1:]:
            if "Exception" in ln or "Error" in ln:
                return ln.lstrip(": ")[:400]
    return lines[0][:400]
