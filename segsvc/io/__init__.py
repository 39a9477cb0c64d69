"""Files in and out, torch-free: images (`images`), mask encodings (`encodings`), pictures of masks and
confusion matrices (`visualize`), and the model folder's files (`modelfolder`)."""
