from muster.runtime.migrations import run_env
from services.ingest.tables import metadata

run_env(metadata)
