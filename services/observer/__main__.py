"""Start the observer: python -m services.observer"""

from schedcp.config import Role
from schedcp.service import run_service
from services.observer.server import build

run_service(Role.OBSERVER, build)
