"""Offline training, export, evaluation and reports (needs the optional train dependencies)."""
