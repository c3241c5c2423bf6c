"""The local defense (main paper, Section 4, Algorithm 2): Glorot mix, metric-head
fine-tuning, its evaluation, export and the Experiment 3 driver."""
