"""The label of a token that carries no loss, shared by training and evaluation."""

#: PyTorch's `cross_entropy` default `ignore_index`; transformers' models skip it in their own loss too.
IGNORE_INDEX = -100
