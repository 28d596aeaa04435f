"""Applying a trained model to a real photo: ``apply`` (find, crop, relight), ``placement``
(where each crop goes), ``network`` (the model on crops), ``blend`` (back into the photo),
``files`` (inputs, outputs, EXIF, ICC, alpha), ``export`` (ONNX, TorchScript)."""

#: Soft edge of the blend mask, as a fraction of its radius (:mod:`pipeline.enhance.blend`,
#: ``deepflash enhance --feather``). Defined here, the package's torch-free part, so that the
#: command's --help shows it without importing torch.
DEFAULT_FEATHER = 0.35
