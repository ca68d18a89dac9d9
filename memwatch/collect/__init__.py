"""The collection layer: the only part of memwatch that touches torch.

Every module here imports torch inside functions or at import time of the module itself;
``import memwatch`` imports none of them until a watch starts.
"""
