class IterableDataset:
    """Base class of an iterable dataset (generic like torch's)."""

    def __class_getitem__(cls, _item):
        return cls

    def __iter__(self):
        raise NotImplementedError
