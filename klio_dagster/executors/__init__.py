"""Executors: run the per-track function over many tracks (in-process, local Beam, Dataflow)."""
