"""Datasets that ship with the dependencies (the offline demo)."""
