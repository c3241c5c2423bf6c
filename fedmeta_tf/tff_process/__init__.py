"""Federated wiring: the TFF process, its driver and execution contexts."""
