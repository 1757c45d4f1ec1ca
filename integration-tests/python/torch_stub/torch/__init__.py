"""A stand-in for the one corner of PyTorch that guidellm uses.

guidellm 0.8 imports torch only for torch.utils.data.DataLoader, which it runs
with batch_size=1 over an IterableDataset to hand prompts to its scheduler. The
torch wheel on PyPI is built for CUDA and does not import without about 3 GB of
NVIDIA libraries, so the cached `guidellm` environment puts this module on the
path instead (venv.sh). It has no package metadata, so transformers and datasets,
which look torch up by its distribution, see no torch and stay in tokenizer-only
mode; datasets looks by module, so venv.sh also sets USE_TORCH=0 for every
interpreter of the environment (brownout_no_torch.pth), which datasets honours.
"""

from . import nn, utils  # noqa: F401

__version__ = "0.0.0+brownout-stub"


class Tensor:
    """Never instantiated: datasets' hashing asks issubclass(t, torch.Tensor) (and
    of torch.Generator and torch.nn.Module) once torch is imported."""


class Generator:
    """Seeded like torch.Generator; the stub loader never shuffles."""

    def __init__(self):
        self.seed = 0

    def manual_seed(self, seed):
        self.seed = int(seed)
        return self
