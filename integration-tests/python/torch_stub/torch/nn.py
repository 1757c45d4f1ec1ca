class Module:
    """Never instantiated; see Tensor in __init__.py."""
