"""Data loading: images, data sets and multi-crop augmentation."""

from attmask.data.images import IMAGENET_MEAN, IMAGENET_STD, load_image, image_to_tensor

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "image_to_tensor", "load_image"]
