from muster.runtime.migrations import run_env
from services.twin.tables import metadata

run_env(metadata)
