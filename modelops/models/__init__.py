"""Models: specs, resolving references, loading, PEFT, model cards."""
