"""Start the observer: python -m services.observer"""

from schedcp.runtime.config import Role
from schedcp.runtime.service import run_service
from services.observer.server import build

run_service(Role.OBSERVER, build)
