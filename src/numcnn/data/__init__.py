"""Data sets and input preprocessing: MNIST's IDX files and pictures of handwritten digits.

Importing this package needs NumPy only; tqdm (download progress) and Pillow (image files) are
imported when first used.
"""

from numcnn.data import images, mnist
from numcnn.data.idx import clear_cache
from numcnn.data.images import *  # noqa: F403  (the names in images.__all__)
from numcnn.data.mnist import *  # noqa: F403  (the names in mnist.__all__, read_idx included)
from numcnn.data.synthetic import SyntheticDigits, synthetic_digits

__all__ = [*images.__all__, *mnist.__all__, "clear_cache", "SyntheticDigits", "synthetic_digits"]  # noqa: PLE0604  (both are lists of str)
