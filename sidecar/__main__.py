"""``python -m sidecar --online URL ...``: the same as ``featurestore serve``."""

from sidecar.cli import serve_command

if __name__ == "__main__":
    serve_command(prog_name="featurestore serve")
