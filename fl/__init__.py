"""Federated learning on top of the secure-aggregation protocols: drivers, data, training, CLI."""
