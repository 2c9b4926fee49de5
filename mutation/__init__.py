"""The mutation check of the contract code (``python -m mutation``; see mutation/run.py)."""
