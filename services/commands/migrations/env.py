from muster.runtime.migrations import run_env
from services.commands.tables import metadata

run_env(metadata)
