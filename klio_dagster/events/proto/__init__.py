"""Klio's message protobuf. ``klio_pb2.py`` is generated: `make proto` regenerates it."""
