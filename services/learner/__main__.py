"""Start the learner: python -m services.learner"""

from schedcp.runtime.config import Role
from schedcp.runtime.service import run_service
from services.learner.server import build

run_service(Role.LEARNER, build)
