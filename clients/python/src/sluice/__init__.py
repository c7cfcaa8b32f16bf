"""Sluice client for Python: time series and vectors over HTTP and the binary wire protocol.

Quick start::

    import sluice

    with sluice.Client("http://127.0.0.1:8080", token="...") as client:
        client.timeseries.put_buffered(metric="cpu", entity="server01", value=75.5)
        with client.timeseries.batch_writer(transport="wire") as w:
            for i in range(100_000):
                w.put("cpu", "server01", float(i), timestamp_ms=1_700_000_000_000 + i)
        result = client.timeseries.query("cpu", aggregation="avg", step_ms=60_000)

See ``docs/clients/python.md`` for every method.
"""

from ._http import AsyncChangefeed, AsyncExportStream, AsyncVectorExportStream, Changefeed, ExportStream, VectorExportStream, __version__
from .aio import AsyncClient, AsyncDatabase
from .batch import (
    AsyncTimeSeriesBatchWriter,
    AsyncVectorBatchWriter,
    TimeSeriesBatchWriter,
    VectorBatchWriter,
    WriteFailure,
)
from .client import Client, Database
# The error classes and answer types are exported under the names their modules list.
from . import errors as _errors
from . import models as _models
from .errors import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .retry import RetryPolicy
from .wire import AsyncWireClient, WireClient

__all__ = [
    "__version__",
    "Client",
    "AsyncClient",
    "Database",
    "AsyncDatabase",
    "WireClient",
    "AsyncWireClient",
    "RetryPolicy",
    "TimeSeriesBatchWriter",
    "VectorBatchWriter",
    "AsyncTimeSeriesBatchWriter",
    "AsyncVectorBatchWriter",
    "WriteFailure",
    "ExportStream",
    "AsyncExportStream",
    "VectorExportStream",
    "AsyncVectorExportStream",
    "Changefeed",
    "AsyncChangefeed",
]
__all__ += [n for n in _errors.__all__ if not n.startswith("error_")]
__all__ += _models.__all__
