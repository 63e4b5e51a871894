"""Start the executor: python -m services.executor"""

from schedcp.config import Role
from schedcp.service import run_service
from services.executor.server import build

run_service(Role.EXECUTOR, build)
