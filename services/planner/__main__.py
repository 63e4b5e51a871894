"""Start the planner: python -m services.planner"""

from schedcp.runtime.config import Role
from schedcp.runtime.service import run_service
from services.planner.server import build

run_service(Role.PLANNER, build)
