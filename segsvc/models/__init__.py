"""The network: output sizes (`sizes`, torch-free), the blocks (`layers`), MobileNetV2 (`encoder`), the
transposed-convolution decoder (`decoder`), the whole model (`model`), BatchNorm folding (`fusion`), saving and
loading a model folder (`serialization`) and its ONNX graph (`export`). Nothing is imported here, so
`segsvc.models.sizes` stays free of torch."""
