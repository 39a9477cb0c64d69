"""Training data: mask formats (`masks`), folder and suffix conventions (`layout`), datasets (`datasets`),
augmentation and the evaluation transform (`transforms`), the data check (`check`), batching of mixed sizes
(`batching`), the choices made from the data (`recipe`), and large images made of photos (`samples`)."""
