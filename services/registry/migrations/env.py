from muster.runtime.migrations import run_env
from services.registry.tables import metadata

run_env(metadata)
