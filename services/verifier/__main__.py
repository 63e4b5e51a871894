"""Start the verifier: python -m services.verifier"""

from schedcp.runtime.config import Role
from schedcp.runtime.service import run_service
from services.verifier.server import build

run_service(Role.VERIFIER, build)
