def get_worker_info():
    """Always in the main process: there are no loader workers."""
    return None


class DataLoader:
    """Iterates the dataset in this process, collating one item at a time.

    torch's loader would run num_workers processes that each take every
    num_workers-th item of the same iterable; one in-process pass yields the
    same items in the same order (guidellm's default is one worker).
    """

    def __class_getitem__(cls, _item):
        return cls

    def __init__(self, dataset, batch_size=1, shuffle=False, collate_fn=None,
                 num_workers=0, prefetch_factor=None, generator=None, **_kwargs):
        if shuffle:
            raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle option")
        self.dataset = dataset
        self.batch_size = batch_size or 1
        self.collate_fn = collate_fn or (lambda batch: batch)
        self.num_workers = num_workers
        self.generator = generator

    def __iter__(self):
        batch = []
        for item in self.dataset:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch:
            yield self.collate_fn(batch)
