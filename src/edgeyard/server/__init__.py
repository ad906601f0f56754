"""Server side: telemetry ingestion (OTLP/HTTP), storage, drift checks and reports.

Needs the `server` extra (`pip install 'edgeyard[server]'`); nothing here is imported by
`import edgeyard`.
"""

from __future__ import annotations
