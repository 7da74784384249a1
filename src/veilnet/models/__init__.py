"""The model zoo and model files.

Classifiers (every one takes ``num_classes``, ``in_channels`` and optional ``mean``/``std``, and
its forward starts with ``self.normalize``, a :class:`Normalize` layer, so it takes [0, 1] pixels):

========================  ==========================================================================
``resnet20/32/44/56/110``  CIFAR ResNets of He et al. 2016, option-A shortcuts (:mod:`.resnet_cifar`);
                           ImageNet mean/std like the pretrained checkpoints (:func:`load_cifar_resnet`)
``lenet``                  LeNet-5 for 32×32 images (:mod:`.lenet`)
``vgg16``                  VGG-16 with batch norm, CIFAR variant (:mod:`.vgg`)
``alexnet``                AlexNet, small-input variant (:mod:`.alexnet`)
``convmixer``              ConvMixer(dim, depth, kernel_size, patch_size) (:mod:`.convmixer`)
``vit``                    ViT(image_size, patch_size, dim, depth, heads, mlp_dim) (:mod:`.vit`)
========================  ==========================================================================

``unet`` (:mod:`.unet`) is the inversion attacker: feature of any shape → image in [0, 1]; it has
no ``normalize`` layer. Default ``mean``/``std``: ImageNet's for 3 channels, 0.5/0.25 otherwise.

Build with :func:`create` (arguments checked for type and range); save with :func:`save`
(safetensors + JSON card) and rebuild with :func:`load`; read foreign CIFAR ResNet checkpoints
with :func:`load_cifar_resnet`; :func:`check_input` says, before any work, whether a model takes
a data set's images; :func:`prepare` readies a model for repeated calls (compiled with
``torch.compile`` where it can be, eager where not, :mod:`.prepared`).

Example::

    model = veilnet.models.create("convmixer", dim=256, depth=8, kernel_size=9, patch_size=4)
    veilnet.models.save(model, "runs/convmixer", data="digits", metrics={"accuracy": 0.9})
    same = veilnet.models.load("runs/convmixer.safetensors")
"""

from __future__ import annotations

from veilnet._lazy import exports

#: The submodules whose ``__all__`` this package exports, each imported on the first use of one of its names.
__getattr__, __dir__, __all__ = exports(
    __name__, __file__, ("alexnet", "convmixer", "folded", "inputs", "io", "lenet", "normalize", "prepared", "registry", "resnet_cifar", "unet", "vgg", "vit")
)
