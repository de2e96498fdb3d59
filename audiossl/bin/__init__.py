"""Thin command-line entry points, one per stage script (python -m audiossl.bin.<name>)."""
