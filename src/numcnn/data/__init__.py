"""Data sets and input preprocessing: MNIST's IDX files and pictures of handwritten digits.

Importing this package needs NumPy only; tqdm (download progress) and Pillow (image files) are
imported when first used.
"""

from numcnn.data.idx import clear_cache, read_idx
from numcnn.data.images import (
    CANVAS_SIZE,
    CENTRE_OF_MASS,
    DIGIT_BOX,
    digit_from_array,
    load_digit_image,
)
from numcnn.data.mnist import (
    MNIST_FILES,
    MNIST_MEAN,
    MNIST_MIRRORS,
    MNIST_SHA256,
    MNIST_STD,
    MnistData,
    download_mnist,
    load_mnist,
    locate_mnist,
    mnist_search_dirs,
    prepare_images,
    user_cache_dir,
)

__all__ = [
    "CANVAS_SIZE",
    "CENTRE_OF_MASS",
    "DIGIT_BOX",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "MNIST_STD",
    "MnistData",
    "clear_cache",
    "digit_from_array",
    "download_mnist",
    "load_digit_image",
    "load_mnist",
    "locate_mnist",
    "mnist_search_dirs",
    "prepare_images",
    "read_idx",
    "user_cache_dir",
]
