"""The whole stack: Docker Compose files, and the local (no-Docker) runner in stack.py."""
