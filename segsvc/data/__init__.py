"""Training data: mask formats (`masks`), folder and suffix conventions (`layout`), datasets and augmentation
(`datasets`), the data check (`check`), batching of mixed sizes (`batching`) and the choices made from the
data (`recipe`)."""
