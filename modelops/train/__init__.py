"""Training: the job, the loop, batching, the job record."""
