"""The app tests use the session fixtures of ``tests/conftest.py``: ``lgg_dir`` and
``pcam_dir`` (tiny datasets in the real formats) and ``segmentation_run`` /
``classification_run`` (the run folders of the tiny segmenter, trained at
``data.image_size`` 32 on 64x64 slices, and of the tiny classifier)."""
