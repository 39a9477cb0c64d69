"""Training data: mask formats (`masks`), folder and suffix conventions (`layout`), labelling tools' exports
(`yolo`, `labelme`, `voc`, drawn with `shapes`), datasets (`datasets`), augmentation and the evaluation transform
(`transforms`), the data check (`check`), batching of mixed sizes (`batching`), the choices made from the data
(`recipe`), what a folder holds (`survey`, `survey_masks`, `reading`: `segsvc data init`), and large images made
of photos (`samples`)."""
