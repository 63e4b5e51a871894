"""Start the executor: python -m services.executor"""

from schedcp.runtime.config import Role
from schedcp.runtime.service import run_service
from services.executor.server import build

run_service(Role.EXECUTOR, build)
