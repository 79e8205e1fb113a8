"""Outcome verifiers: whether a completed solution solved its problem (prm_data/verifiers/protocol.py)."""
