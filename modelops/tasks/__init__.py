"""What differs between tasks: how rows become tensors, how a batch is collated, the loss, and the metrics.

Below the components (`train`, `evaluate`), so both use the same tokenising, masking, pair scoring and
metric functions; above `models`.
"""
