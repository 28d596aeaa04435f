"""Applying a trained model to a real photo: ``apply`` (find, crop, relight), ``placement``
(where each crop goes), ``network`` (the model on crops), ``blend`` (back into the photo),
``files`` (inputs, outputs, EXIF, ICC, alpha), ``export`` (ONNX, TorchScript)."""
