"""Federated wiring: the TFF process, its aggregators and execution contexts."""
