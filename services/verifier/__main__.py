"""Start the verifier: python -m services.verifier"""

from schedcp.config import Role
from schedcp.service import run_service
from services.verifier.server import build

run_service(Role.VERIFIER, build)
