"""Start the planner: python -m services.planner"""

from schedcp.config import Role
from schedcp.service import run_service
from services.planner.server import build

run_service(Role.PLANNER, build)
