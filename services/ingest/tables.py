"""The ingest context's tables (schema `ingest`): its projections of the registry and what it stores."""

from sqlalchemy import MetaData

metadata = MetaData(schema="ingest")
