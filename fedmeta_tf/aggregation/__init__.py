"""Server aggregation of client updates: one object per aggregator."""
